"""Scaling table: time against batch size, latent size, dataset size (training) and K
(importance sampling), on each backend.

Each row is the median of a few repeats at one setting, the others held at the base values.
``relative_cost`` is seconds ÷ the smallest setting's seconds, ``relative_size`` the setting ÷
the smallest setting, so a workload that grows linearly has ``relative_cost ≈ relative_size``
for K and the dataset size (per-epoch training time grows with N; per-image time does not),
and a flat per-epoch cost for the batch size when the per-step overhead is negligible.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

SCALING_COLUMNS = ("backend", "factor", "value", "seconds", "unit", "relative_size",
                   "relative_cost")


@dataclasses.dataclass(frozen=True)
class ScalingGrid:
    """Settings of each factor and the base values the others keep."""

    batch_sizes: tuple[int, ...] = (32, 128, 512)
    latent_sizes: tuple[int, ...] = (10, 20, 50)
    dataset_sizes: tuple[int, ...] = (1000, 2000, 4000)
    num_samples: tuple[int, ...] = (500, 2000, 8000)
    base_batch: int = 128
    base_latent: int = 20
    base_data: int = 2000
    is_images: int = 4
    repeats: int = 3


def _median_seconds(fn: Callable[[int], Any], repeats: int) -> float:
    fn(0)  # warm-up (compilation)
    times = []
    for r in range(1, repeats + 1):
        start = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _vae(spec: Any, backend: str, latent: int, device: Any) -> Any:
    from ppl_vae.models import build

    spec = dataclasses.replace(spec, latent_dim=latent)
    kwargs = {"device": device or "cpu"} if backend == "pyro" else {}
    return build(spec, backend, seed=0, **kwargs)


def _epoch_seconds(spec: Any, backend: str, x: np.ndarray, *, latent: int, batch: int,
                   repeats: int, device: Any) -> float:
    from ppl_vae.bench.fit_loops import FitLoop

    loop = FitLoop(_vae(spec, backend, latent, device), x, batch_size=batch, learning_rate=1e-3,
                   seed=0, epochs=repeats + 1, device=device if backend == "pyro" else None)
    return _median_seconds(loop.run_epoch, repeats)


def _evaluation_seconds(vae: Any, x: np.ndarray, num_samples: int, repeats: int) -> float:
    from ppl_vae.evaluation import importance_sample

    return _median_seconds(lambda r: importance_sample(vae, x, num_samples, seed=r), repeats)


def scaling_table(spec: Any, x: np.ndarray, backends: list[str], grid: ScalingGrid, *,
                  device: Any = None, progress: Callable[[str], None] | None = None
                  ) -> pd.DataFrame:
    """The scaling rows (see the module notes) for ``spec`` trained on rows of ``x``."""
    g = grid
    rows = []
    for backend in backends:
        def train(latent: int, batch: int, n: int, backend: str = backend) -> float:
            return _epoch_seconds(spec, backend, x[:n], latent=latent, batch=batch,
                                  repeats=g.repeats, device=device)

        vae = _vae(spec, backend, g.base_latent, device)
        settings = (
            [("batch size", b, "s/epoch", partial(train, g.base_latent, b, g.base_data))
             for b in g.batch_sizes]
            + [("latent size", d, "s/epoch", partial(train, d, g.base_batch, g.base_data))
               for d in g.latent_sizes]
            + [("dataset size", n, "s/epoch", partial(train, g.base_latent, g.base_batch, n))
               for n in g.dataset_sizes]
            + [("K", k, "s/evaluation", partial(_evaluation_seconds, vae, x[:g.is_images], k,
                                                g.repeats)) for k in g.num_samples])
        for factor, value, unit, measure in settings:
            rows.append({"backend": backend, "factor": factor, "value": value,
                         "seconds": measure(), "unit": unit})
            if progress is not None:
                progress(f"scaling {backend} {factor}={value}: {rows[-1]['seconds']:.3f} {unit}")
    table = pd.DataFrame(rows, columns=list(SCALING_COLUMNS[:5]))
    first = table.groupby(["backend", "factor"], sort=False)
    table["relative_size"] = table["value"] / first["value"].transform("min")
    table["relative_cost"] = table["seconds"] / first["seconds"].transform("first")
    return table


def nonlinear_growth(table: pd.DataFrame, tolerance: float = 0.25) -> pd.DataFrame:
    """Rows of the factors that should grow linearly (K; the dataset size for s/epoch) whose
    relative cost departs from the relative size by more than ``tolerance`` (a fraction)."""
    linear = table[table["factor"].isin(["K", "dataset size"])]
    off = (linear["relative_cost"] / linear["relative_size"] - 1).abs() > tolerance
    return linear[off]
