r"""Importance weights of a guide and their Pareto-smoothed tail index k̂ (PSIS).

For a datapoint x and draws z₁..z_S ~ q(z | x) the log importance weights

.. math:: \log w_s = \log p(x, z_s) - \log q(z_s | x)

estimate log p(x) (their log-mean-exp) and show how well q covers p(z | x): the shape k̂
of a generalized Pareto distribution fitted to the largest weights (Vehtari et al. 2024)
is < 0.5 for a good guide, 0.5–0.7 usable, > 0.7 unreliable (Yao et al. 2018); with S
draws the reliable range ends at min(1 − 1/log₁₀ S, 0.7).

References
----------
Yao, Y., Vehtari, A., Simpson, D. & Gelman, A. (2018). Yes, but did it work?: Evaluating
variational inference. ICML.
Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed
importance sampling. JMLR 25(72).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ppl_vae.evaluation.importance import DEFAULT_BUDGET, importance_sample

__all__ = ["BANDS", "KHAT_GOOD", "KHAT_OK", "ImportanceWeights", "PSISResult",
           "importance_weights", "khat_bands", "khat_summary", "khat_threshold", "psis"]

KHAT_GOOD = 0.5
"""k̂ below this: the importance weights (and the guide) are good (Yao et al. 2018)."""
KHAT_OK = 0.7
"""k̂ above this: importance sampling is unreliable, whatever the sample size."""
BANDS = ("good", "ok", "unreliable")

_ROUNDING_MARGIN = 1000.0
"""Rounding allowance, in machine epsilons of the summed log-density magnitudes: a sum
over D ≤ 1000 terms (and the networks before it) loses at most about D epsilons."""


@dataclass(frozen=True)
class ImportanceWeights:
    """Draws from the guide and their log-densities, all ``(S, B)`` float64.

    ``log_weight = log_likelihood + log_prior − log_q``. ``resolution`` ``(B,)`` is the
    rounding level of the log weights in the dtype they were computed in: log weights
    spread less than this are equal to working precision.
    """

    draws: dict[str, np.ndarray]
    log_likelihood: np.ndarray
    log_prior: np.ndarray
    log_q: np.ndarray
    resolution: np.ndarray

    @property
    def log_weight(self) -> np.ndarray:
        return self.log_likelihood + self.log_prior - self.log_q

    @property
    def num_samples(self) -> int:
        return self.log_q.shape[0]

    def terms(self) -> dict[str, np.ndarray]:
        """The three log-density terms, keyed as ``vae.log_prob_terms`` keys them."""
        return {"log_likelihood": self.log_likelihood, "log_prior": self.log_prior,
                "log_q": self.log_q}


def importance_weights(vae: Any, x: Any, num_samples: int = 1000, *, idx: Any = None,
                       seed: int = 0, budget: int = DEFAULT_BUDGET,
                       progress: bool = False) -> ImportanceWeights:
    """Draw ``num_samples`` latents per datapoint from the guide and weigh them.

    The draws are :func:`ppl_vae.evaluation.importance_sample`'s: for the same seed, number of
    samples and budget, k̂ describes exactly the weights behind ``ppl-vae evaluate``'s
    log p(x).

    Parameters
    ----------
    vae : a VAE of either backend.
    x : ``(B, D)`` data (checked by the sampler).
    idx : datapoint indices (required by encoder-free models).
    seed : seeds the draws.
    budget : (particle × datapoint) pairs decoded at once; bounds memory.
    progress : show the sampler's progress bar.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 for importance weights, got {num_samples}")
    est = importance_sample(vae, x, num_samples, seed=seed, idx=idx, budget=budget,
                            keep_draws=True, progress=progress)
    terms = est.terms
    eps = float(np.finfo(np.dtype(vae.dtype_name)).eps)
    magnitude = sum(np.abs(v) for v in terms.values()).max(axis=0)
    return ImportanceWeights(draws=est.draws, **terms,
                             resolution=_ROUNDING_MARGIN * eps * (1.0 + magnitude))


# --------------------------------------------------------------------------- PSIS


@dataclass(frozen=True)
class PSISResult:
    """Pareto k̂ per datapoint and the Pareto-smoothed, normalized log weights ``(S, B)``.

    ``khat`` is −inf where the log weights are constant to working precision (the guide
    is exact there; a tail fit to rounding noise would be meaningless).
    """

    khat: np.ndarray
    log_weights: np.ndarray
    num_samples: int

    @property
    def threshold(self) -> float:
        return khat_threshold(self.num_samples)


def psis(log_weights: Any, *, resolution: Any = 0.0) -> PSISResult:
    """Pareto-smoothed importance sampling of log weights ``(S, B)`` (draws first).

    ArviZ's ``psislw`` takes the log importance ratios log p − log q themselves (not their
    negation, unlike arviz-stats' array ``psislw``, which takes log-likelihoods) and
    smooths over the last axis; draws from the guide are independent, so the relative
    efficiency is 1.

    Parameters
    ----------
    log_weights : ``(S, B)`` log p(x, z_s) − log q(z_s | x).
    resolution : scalar or ``(B,)``: log weights whose spread (max − min) is at most this
        are constant to working precision; their k̂ is −inf (see
        :attr:`ImportanceWeights.resolution`).
    """
    import arviz as az

    log_weights = np.asarray(log_weights, dtype=np.float64)
    if log_weights.ndim != 2:
        raise ValueError(f"log_weights must have shape (S, B), got {log_weights.shape}")
    if not np.all(np.isfinite(log_weights)):
        raise ValueError("log_weights contain NaN or ±inf; the guide puts mass where the "
                         "model has none (or the model produced NaN): check the VAE's outputs")
    num_samples = log_weights.shape[0]
    smoothed, khat = az.psislw(log_weights.T.copy())
    constant = np.ptp(log_weights, axis=0) <= np.broadcast_to(resolution, khat.shape)
    khat = np.where(constant, -np.inf, khat)
    smoothed = np.where(constant[:, None], -np.log(num_samples), smoothed)
    return PSISResult(khat=khat, log_weights=smoothed.T, num_samples=num_samples)


def khat_threshold(num_samples: int) -> float:
    """The sample-size-dependent k̂ threshold min(1 − 1/log₁₀ S, 0.7) (Vehtari et al. 2024)."""
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    return min(1.0 - 1.0 / np.log10(num_samples), KHAT_OK)


def khat_bands(khat: Any) -> np.ndarray:
    """"good" (k̂ < 0.5), "ok" (0.5 ≤ k̂ ≤ 0.7) or "unreliable" (k̂ > 0.7), per value."""
    khat = np.asarray(khat, dtype=np.float64)
    return np.select([khat < KHAT_GOOD, khat <= KHAT_OK], BANDS[:2], BANDS[2])


def khat_summary(khat: Any, num_samples: int) -> pd.DataFrame:
    """Count and fraction of datapoints per k̂ band, plus those above the S-dependent
    threshold (``band = "above min(1-1/log10 S, 0.7)"``)."""
    khat = np.asarray(khat, dtype=np.float64)
    bands = khat_bands(khat)
    threshold = khat_threshold(num_samples)
    rows = [(band, int((bands == band).sum())) for band in BANDS]
    rows.append((f"above min(1-1/log10 S, 0.7) = {threshold:.3g}", int((khat >= threshold).sum())))
    df = pd.DataFrame(rows, columns=["band", "count"])
    df["fraction"] = df["count"] / max(khat.size, 1)
    return df
