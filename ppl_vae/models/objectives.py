r"""Objective math written once for both backends, through ``ops``.

The backends' ELBO classes (:mod:`ppl_vae.models.pyro_elbos`, :mod:`ppl_vae.models.numpyro_elbos`)
read traces in their library's format and hand the pieces here: which latent sites a guide
has and whether each is reparameterized, the log-densities of every sample site, the plate
scales, and the (q, p) pairs whose KL must have a closed form.

Importance-weighted bounds reduce the log-densities of every sample site to one log weight
per element of the plates *shared by every site* (as Pyro's and NumPyro's ``RenyiELBO``):

.. math:: \log w_k = \sum_{\text{model sites}} \log p - \sum_{\text{guide sites}} \log q,

summed over every other dimension, and apply the subsampling scale N/B *after* the
log-mean-exp, so that the bound of a minibatch is (N/B) Σ_b log (1/K) Σ_k w_bk.

References
----------
Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders. Tucker, Lawson, Gu &
Maddison (2018), Doubly reparameterized gradient estimators for Monte Carlo objectives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def require_reparameterized(latents: Iterable[tuple[str, Any]], estimator: str) -> None:
    """Raise ``ValueError`` unless every (name, distribution) latent site has ``rsample``."""
    bad = [name for name, fn in latents if not fn.has_rsample]
    if bad:
        raise ValueError(f"the {estimator} estimator differentiates through the samples, but "
                         f"the guide's sites {bad} are not reparameterized (discrete or "
                         "score-function); use 'vimco' for a multi-sample bound (or relaxed "
                         "gates), or 'reparam', 'score' or 'score-baseline'")


def check_closed_form_kl(pairs: Iterable[tuple[str, Any, Any]], kl_divergence: Any) -> None:
    """Raise ``ValueError`` unless KL(q ‖ p) has a registered closed form for every
    (name, q, p) latent site: the libraries' ``TraceMeanField_ELBO`` silently falls back to
    Monte Carlo otherwise."""
    for name, q, p in pairs:
        try:
            kl_divergence(q, p)
        except NotImplementedError:
            raise ValueError(
                f"site {name!r}: no closed-form KL between {type(q).__name__} and "
                f"{type(p).__name__}; the analytic-kl estimator would silently use Monte "
                "Carlo, use 'reparam' instead") from None


def common_scale(scales: Iterable[Any]) -> float:
    """The one subsampling scale shared by every sample site (None counts as 1)."""
    found = set()
    for scale in scales:
        if scale is None:
            scale = 1.0
        elif hasattr(scale, "numel") and scale.numel() == 1:  # a torch scalar
            scale = float(scale)
        found.add(scale)
    if len(found) != 1 or not isinstance(next(iter(found)), int | float):
        raise ValueError("the dreg estimator needs one scale shared by every sample site (a "
                         "subsampled plate enclosing the whole model); got scales "
                         f"{sorted(map(str, found))}")
    return float(next(iter(found)))


def shared_plate_log_weight(ops: Any, sites: Sequence[tuple[float, Any]],
                            keep: set[int]) -> Any:
    """Σ sign · log p over (sign, log p) sample sites, each summed over every dimension not in
    ``keep`` (negative dimension numbers of the shared plates, kept with size 1)."""
    total = 0.0
    for sign, log_p in sites:
        ndim = len(log_p.shape)
        axes = tuple(d for d in range(-ndim, 0) if d not in keep)
        total = total + sign * (ops.sum(log_p, axes, keepdims=True) if axes else log_p)
    return total


def normalized_weights(ops: Any, log_w: Any, num_particles: int) -> tuple[Any, Any]:
    r"""(log (1/K) Σ_k w_k, w̃ = w / Σ_j w_j) over the particle dimension 0; w̃ carries no
    gradient. The DReG surrogate of Tucker et al. (2018) is Σ_k w̃_k log w_k with the path
    gradient of each z_k scaled by w̃_k."""
    top = ops.logsumexp(log_w, 0)
    return top - math.log(num_particles), ops.stop_gradient(ops.exp(log_w - top))


def leave_one_out_signals(ops: Any, log_w: Any, num_particles: int) -> Any:
    r"""VIMCO's per-particle learning signals (Mnih & Rezende 2016, eqs. 8–10), no gradient.

    With L = log (1/K) Σ_j w_j and w_k replaced by the geometric mean of the others,
    f̂_{−k} = exp((1/(K−1)) Σ_{j≠k} log w_j),

    .. math:: \hat L(k \mid -k) = L - \log \frac1K \Big(\sum_{j \ne k} w_j + \hat f_{-k}\Big),

    the score term Σ_k L̂(k | −k) ∇ log q(z_k) is unbiased (the subtracted part does not
    depend on z_k) and has a baseline that tracks each particle's share of the bound.
    Computed as a (K, K, ...) log-sum-exp, stable when one weight dominates.
    """
    if num_particles < 2:
        raise ValueError("the vimco estimator needs num_particles >= 2 (its baseline for each "
                         "particle is built from the other particles)")
    log_w = ops.stop_gradient(log_w)
    total = ops.sum(log_w, (0,), keepdims=True)
    geometric = (total - log_w) / (num_particles - 1)  # log f̂_{−k}, shape (K, ...)
    eye = ops.eye(log_w, num_particles).reshape((num_particles, num_particles)
                                                 + (1,) * (len(log_w.shape) - 1))
    # row k: log w_j for j ≠ k and log f̂_{−k} on the diagonal
    swapped = log_w[None] + eye * (geometric[:, None] - log_w[None])
    bound = ops.logsumexp(log_w, 0)
    return bound - ops.logsumexp(swapped, 1)
