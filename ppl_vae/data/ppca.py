r"""Probabilistic PCA: synthetic data and its exact likelihood and posterior.

The model ``z ~ N(0, I)``, ``x | z ~ N(W z + b, σ² I)`` has the closed forms
(Tipping & Bishop 1999)

.. math::
    p(x) = N(x; b, W W^T + σ² I), \qquad
    p(z | x) = N\bigl(M^{-1} W^T (x - b),\; σ² M^{-1}\bigr), \quad M = W^T W + σ² I.

When the columns of ``W`` are orthogonal, ``M`` is diagonal, so the exact posterior is a
diagonal Gaussian whose mean is a linear map of ``x``: the ``linear_gaussian`` zoo model's
linear encoder represents it exactly (:func:`ppl_vae.models.linear_gaussian.set_ppca_params`
writes such a model's weights); estimators of log p(x) and posterior diagnostics are then
checked against :func:`exact_log_likelihood` and :func:`exact_posterior`.

References
----------
Tipping, M. E. & Bishop, C. M. (1999). Probabilistic principal component analysis.
JRSS B 61(3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ppl_vae.data.sources import RawData

__all__ = ["PPCAParams", "exact_log_likelihood", "exact_posterior", "inverse_softplus",
           "orthogonal_ppca", "ppca_synthetic"]


@dataclass(frozen=True, eq=False)
class PPCAParams:
    """True parameters of :func:`ppca_synthetic`: ``x = W z + b + sigma * eps``."""

    W: np.ndarray
    b: np.ndarray
    sigma: float


def ppca_synthetic(
    num_data: int = 1000,
    data_dim: int = 10,
    latent_dim: int = 2,
    noise_scale: float = 0.1,
    seed: int = 0,
) -> tuple[RawData, PPCAParams]:
    """Sample ``x = W z + b + noise_scale * eps`` with ``z, eps ~ N(0, I)``.

    Returns float32 continuous data (``max_value=None``: not intensities, never
    rescaled to [0, 1]; use a Gaussian likelihood) and the true parameters,
    ``W`` of shape ``(data_dim, latent_dim)`` and ``b`` of shape ``(data_dim,)``.
    """
    if noise_scale <= 0:
        raise ValueError(f"noise_scale must be positive, got {noise_scale}")
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(data_dim, latent_dim))
    b = rng.normal(size=data_dim)
    z = rng.normal(size=(num_data, latent_dim))
    x = z @ W.T + b + noise_scale * rng.normal(size=(num_data, data_dim))
    raw = RawData(values=x.astype(np.float32), max_value=None, name="ppca")
    return raw, PPCAParams(W=W, b=b, sigma=float(noise_scale))


def exact_log_likelihood(W: Any, b: Any, sigma: float, x: Any) -> np.ndarray:
    """Exact ``log N(x; b, W W^T + sigma^2 I)`` per datapoint, in float64.

    ``x`` has shape ``(..., D)``; the result has shape ``x.shape[:-1]``.
    """
    from scipy.linalg import cholesky, solve_triangular

    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    dim = W.shape[0]
    cov = W @ W.T + sigma**2 * np.eye(dim)
    chol = cholesky(cov, lower=True)
    centred = (x - np.asarray(b, dtype=np.float64)).reshape(-1, dim)
    white = solve_triangular(chol, centred.T, lower=True)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    log_prob = -0.5 * (dim * np.log(2 * np.pi) + log_det + (white**2).sum(axis=0))
    return log_prob.reshape(x.shape[:-1])


def inverse_softplus(y: Any) -> np.ndarray:
    """softplus⁻¹(y) = log(eˣ − 1), computed stably for large and small positive ``y``."""
    y = np.asarray(y, dtype=np.float64)
    if np.any(y <= 0):
        raise ValueError(f"softplus takes only positive values; got min {y.min():g}")
    return y + np.log(-np.expm1(-y))


def orthogonal_ppca(data_dim: int, latent_dim: int, noise_scale: float = 0.5,
                    seed: int = 0) -> PPCAParams:
    """PPCA parameters whose ``W`` has orthogonal columns of unequal lengths.

    Column lengths are drawn from U(0.5, 3), so the posterior variances differ per latent
    dimension, yet p(z | x) stays diagonal (representable by a diagonal Gaussian encoder).
    """
    if latent_dim > data_dim:
        raise ValueError(f"latent_dim ({latent_dim}) must be <= data_dim ({data_dim}) for "
                         "orthogonal columns")
    if not noise_scale > 0:
        raise ValueError(f"noise_scale must be > 0, got {noise_scale}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(data_dim, latent_dim)))
    W = q * rng.uniform(0.5, 3.0, size=latent_dim)
    b = rng.normal(size=data_dim)
    return PPCAParams(W=W, b=b, sigma=float(noise_scale))


def exact_posterior(W: Any, b: Any, sigma: float, x: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean ``(..., d)`` and covariance ``(d, d)`` of p(z | x) (any ``W``, float64).

    mean = M⁻¹ Wᵀ (x − b), cov = σ² M⁻¹ with M = WᵀW + σ² I; the covariance does not
    depend on x.
    """
    W = np.asarray(W, dtype=np.float64)
    M = W.T @ W + sigma**2 * np.eye(W.shape[1])
    centred = np.asarray(x, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean = np.linalg.solve(M, W.T @ centred.reshape(-1, W.shape[0]).T).T
    cov = sigma**2 * np.linalg.inv(M)
    return mean.reshape(*centred.shape[:-1], W.shape[1]), 0.5 * (cov + cov.T)
