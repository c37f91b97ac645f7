"""Posterior collapse: KL per latent dimension and active units, flagged per dimension."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.evaluation.metrics import active_units, kl_per_dimension

__all__ = ["posterior_collapse"]


def posterior_collapse(vae: Any, x: Any, *, idx: Any = None, kl_threshold: float = 0.01,
                       num_samples: int = 100, seed: int = 0) -> pd.DataFrame:
    """KL per latent dimension and active units, one row per dimension, flagged.

    A dimension is ``collapsed`` when its KL(q(z_u | x) ‖ p(z_u)), averaged over ``x``, is
    below ``kl_threshold`` nats: its posterior is the prior, whatever the datapoint
    (posterior collapse; Lucas et al. 2019's δ-collapse on average). ``active`` is Burda
    et al. (2016)'s Var_x(E_q[z_u | x]) > 0.01. Computed by :mod:`ppl_vae.evaluation`; for
    priors that do not factorize over dimensions (mixtures) the KL columns are NaN.

    References
    ----------
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
    Lucas, J., Tucker, G., Grosse, R. & Norouzi, M. (2019). Don't blame the ELBO! A linear
    VAE perspective on posterior collapse. NeurIPS.
    """
    units = active_units(vae, x, idx=idx)
    table = pd.DataFrame({"latent_dim": np.arange(units.activity.size),
                          "activity": units.activity, "active": units.active})
    if not vae.spec.prior.factorized:
        table["kl"], table["kl_se"], table["collapsed"] = np.nan, np.nan, False
        return table
    kl = kl_per_dimension(vae, x, idx=idx, num_samples=num_samples, seed=seed)
    table["kl"], table["kl_se"] = kl.kl, kl.stderr
    table["collapsed"] = kl.kl < kl_threshold
    return table
