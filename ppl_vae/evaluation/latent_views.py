"""Views of a model's latent space, for the run report: codes, traversals, interpolations.

* :func:`latent_codes` — posterior means E_q[z | x] of some datapoints with their labels and
  a 2-D view (the codes themselves for d ≤ 2, else their first two principal components);
* :func:`traversals` — decoder means along the most active latent dimensions, each moved
  from its 5% to its 95% quantile over the codes, the others held at the codes' mean;
* :func:`interpolations` — decoder means on straight lines between pairs of codes.

Only ``vae.encode`` and ``vae.decode_or_draw`` are used, so both backends and every posterior
family with an encoder are covered (masked codes: E_q[z] = P(gate on) × slab mean); a local
autoregressive decoder, which has no mean, shows one draw x ~ p(x | z) per code instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["interpolations", "latent_codes", "traversals"]


def latent_codes(vae: Any, x: Any, labels: Any = None, *, idx: Any = None) -> pd.DataFrame:
    """One row per datapoint: ``datapoint``, ``label`` (−1 without labels), ``z_0`` ...
    ``z_{d-1}`` and the 2-D view ``view_1``, ``view_2``."""
    z = np.asarray(vae.encode(x, idx), dtype=np.float64)
    if z.shape[1] <= 2:
        view = np.pad(z, ((0, 0), (0, 2 - z.shape[1])))
    else:
        centred = z - z.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        view = centred @ vt[:2].T
    frame = pd.DataFrame(z, columns=[f"z_{u}" for u in range(z.shape[1])])
    frame.insert(0, "label", -1 if labels is None else np.asarray(labels)[:len(z)])
    frame.insert(0, "datapoint", np.arange(len(z)))
    return frame.assign(view_1=view[:, 0], view_2=view[:, 1])


def traversals(vae: Any, codes: pd.DataFrame, *, num_dims: int = 8,
               num_steps: int = 9, seed: int = 0) -> np.ndarray:
    """``(num_dims · num_steps, D)`` decoder means: a row per dimension (the most variable
    codes first), ``num_steps`` values from its 5% to its 95% quantile (``seed``: the pixel
    draws of a decoder without a mean)."""
    z = codes[[c for c in codes.columns if c.startswith("z_")]].to_numpy()
    order = np.argsort(-z.var(axis=0))[:num_dims]
    grid = np.repeat(z.mean(axis=0)[None], len(order) * num_steps, axis=0)
    for row, dim in enumerate(order):
        grid[row * num_steps:(row + 1) * num_steps, dim] = np.quantile(
            z[:, dim], np.linspace(0.05, 0.95, num_steps))
    return np.asarray(vae.decode_or_draw(grid.astype(np.float32), seed=seed))


def interpolations(vae: Any, codes: pd.DataFrame, *, num_pairs: int = 6,
                   num_steps: int = 9, seed: int = 0) -> np.ndarray:
    """``(num_pairs · num_steps, D)`` decoder means from code 2k to code 2k+1 (pairs of
    different labels where labels exist; ``seed`` as in :func:`traversals`)."""
    z = codes[[c for c in codes.columns if c.startswith("z_")]].to_numpy()
    labels = codes["label"].to_numpy()
    pairs, used = [], set()
    for a in range(len(z)):
        if len(pairs) == num_pairs:
            break
        if a in used:
            continue
        for b in range(a + 1, len(z)):
            if b not in used and (labels[a] != labels[b] or labels[a] == -1):
                pairs.append((a, b))
                used |= {a, b}
                break
    t = np.linspace(0.0, 1.0, num_steps)[:, None]
    lines = [(1 - t) * z[a] + t * z[b] for a, b in pairs]
    return np.asarray(vae.decode_or_draw(np.concatenate(lines).astype(np.float32), seed=seed))
