r"""Objective math written once for both backends, through ``ops``.

The backends' ELBO classes (:mod:`ppl_vae.models.pyro_elbos`, :mod:`ppl_vae.models.numpyro_elbos`)
run the programs and flatten their traces in their library's format; everything they compute
from the flattened sites is here: the site checks and refusals, the log weights of the
importance-weighted bounds and their gradients (IWAE, VIMCO, DReG), the surrogate that turns a
(bound, surrogate) pair into a loss, and the per-datapoint and neural baselines of the
score-function estimator.

Importance-weighted bounds reduce the log-densities of every sample site to one log weight
per element of the plates *shared by every site* (as Pyro's and NumPyro's ``RenyiELBO``):

.. math:: \log w_k = \sum_{\text{model sites}} \log p - \sum_{\text{guide sites}} \log q,

summed over every other dimension, and apply the subsampling scale N/B *after* the
log-mean-exp, so that the bound of a minibatch is (N/B) Σ_b log (1/K) Σ_k w_bk.

References
----------
Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders. Mnih & Rezende (2016),
Variational inference for Monte Carlo objectives. Tucker, Lawson, Gu & Maddison (2018), Doubly
reparameterized gradient estimators for Monte Carlo objectives. Mnih & Gregor (2014), Neural
variational inference and learning in belief networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def reparameterized_only_error(estimator: str, sites: Sequence[str],
                                kind: type[Exception] = ValueError) -> Exception:
    """The one refusal of an estimator that differentiates through every sample path, for a
    guide with discrete or score-function sites."""
    return kind(f"the {estimator} estimator differentiates through every sample path, but the "
                f"guide's sites {list(sites)} are not reparameterized (discrete or "
                "score-function); use 'vimco' for a multi-sample bound (or relaxed gates), or "
                "'reparam', 'score' or 'score-baseline'")


def require_reparameterized(latents: Iterable[tuple[str, Any]], estimator: str) -> None:
    """Raise :func:`reparameterized_only_error` unless every (name, distribution) latent site
    has ``rsample``."""
    bad = [name for name, fn in latents if not fn.has_rsample]
    if bad:
        raise reparameterized_only_error(estimator, bad)


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


def surrogate_loss(bound: Any, surrogate: Any, stop_gradient: Callable[[Any], Any]) -> Any:
    """−bound in value with the gradient of −surrogate: −(⊥bound + surrogate − ⊥surrogate)."""
    return -(stop_gradient(bound) + surrogate - stop_gradient(surrogate))


# --------------------------------------------------------------------------- log weights


@dataclass(frozen=True, eq=False)
class WeightedSite:
    """A sample site of a model (``sign`` +1) or guide (−1) trace, flattened by a backend:
    its unscaled, masked log-density, the dimensions of its vectorized plates, its
    subsampling scale, and whether its value is reparameterized."""

    sign: float
    log_prob: Any
    plate_dims: frozenset[int]
    scale: Any
    reparameterized: bool


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
        raise ValueError("the importance-weighted estimators need one scale shared by every "
                         "sample site (a subsampled plate enclosing the whole model); got "
                         f"scales {sorted(map(str, found))}")
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


def log_weights(ops: Any, sites: Sequence[WeightedSite]) -> tuple[Any, float, Any]:
    """(log w, the common scale, Σ log q of the non-reparameterized guide sites): the first
    and the last per element of the plates shared by every site (particle plate included)."""
    keep = set(frozenset.intersection(*(site.plate_dims for site in sites)))
    log_w = shared_plate_log_weight(ops, [(s.sign, s.log_prob) for s in sites], keep)
    score = shared_plate_log_weight(ops, [(1.0, s.log_prob) for s in sites
                                          if s.sign < 0 and not s.reparameterized], keep)
    log_q_score = ops.full(log_w, tuple(log_w.shape), 0.0) + score
    return log_w, common_scale(s.scale for s in sites), log_q_score


# --------------------------------------------------------------------------- IWAE, VIMCO, DReG


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


def _total(ops: Any, x: Any) -> Any:
    return ops.sum(x, tuple(range(len(x.shape))))


def importance_weighted(ops: Any, log_w: Any, log_q_score: Any, num_particles: int,
                        scale: float, *, vimco: bool) -> tuple[Any, Any]:
    r"""(bound, surrogate) of the IWAE bound (Burda et al. 2016), scaled by N/B after the
    log-mean-exp. The surrogate's gradient is Σ_k w̃_k ∇ log w_k through every sample path;
    with ``vimco`` it adds the score term Σ_k L̂(k | −k) ∇ log q(z_k) of the
    non-reparameterized sites (:func:`leave_one_out_signals`)."""
    log_mean, _ = normalized_weights(ops, log_w, num_particles)
    bound = scale * _total(ops, log_mean)
    if not vimco:
        return bound, bound
    signals = leave_one_out_signals(ops, log_w, num_particles)
    return bound, bound + scale * _total(ops, signals * log_q_score)


def scale_path(ops: Any, value: Any, weight: Any, event_dim: int) -> Any:
    """``value`` whose gradient is multiplied by ``weight`` (broadcast over the ``event_dim``
    rightmost dimensions): ⊥v + (v − ⊥v) · w has exactly the value v and the gradient w · ∂."""
    weight = weight.reshape(tuple(weight.shape) + (1,) * event_dim)
    stopped = ops.stop_gradient(value)
    return stopped + (value - stopped) * weight


def doubly_reparameterized(ops: Any, log_w: Any, num_particles: int, scale: float,
                           path_log_w: Callable[[Any], Any]) -> tuple[Any, Any]:
    r"""(bound, surrogate) of DReG (Tucker et al. 2018): the IWAE bound, and
    Σ_k w̃_k log w_k where ``path_log_w(w̃)`` gives log w at values whose path gradient is
    multiplied by w̃_k (log q re-scored with stop-gradient guide parameters), so that

    .. math:: ∇_θ = Σ_k w̃_k ∇_θ \log w_k,\qquad
              ∇_φ = Σ_k w̃_k^2 \frac{∂ \log w_k}{∂ z_k} \frac{∂ z_k}{∂ φ}.
    """
    log_mean, weights = normalized_weights(ops, ops.stop_gradient(log_w), num_particles)
    surrogate = ops.sum(weights * path_log_w(weights), (0,))
    return scale * _total(ops, log_mean), scale * _total(ops, surrogate)


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True, eq=False)
class BaselineFrame:
    """A plate of a score-function site, for its baseline table: its dimension, its full
    size, and the minibatch's datapoint indices when it is subsampled (else None)."""

    name: str
    dim: int
    full_size: int
    indices: Any = None


def baseline_table_shape(frames: Sequence[BaselineFrame]) -> list[int]:
    """One decaying average per element of the site's plates, a subsampled plate counting its
    full size (one average per datapoint)."""
    shape = [1] * -min([f.dim for f in frames], default=0)
    for f in frames:
        shape[f.dim] = f.full_size
    return shape


def baseline_index(frames: Sequence[BaselineFrame], ndim: int) -> tuple:
    """The minibatch's rows of a ``ndim``-dimensional baseline table: the datapoint indices
    along the one subsampled plate, everything along the others."""
    subsampled = [f for f in frames if f.indices is not None]
    if len(subsampled) > 1:
        raise ValueError("score-baseline keeps one average per datapoint of one subsampled "
                         f"plate; this site is in several: {[f.name for f in subsampled]}")
    index: list[Any] = [slice(None)] * ndim
    for f in subsampled:
        index[f.dim] = f.indices
    return tuple(index)


def decayed_average(beta: float, average: Any, signal: Any) -> Any:
    """b ← β b + (1 − β) f̄: the baseline's update with the minibatch's learning signal."""
    return beta * average + (1 - beta) * signal


def baseline_features(ops: Any, args: tuple) -> Any:
    """The neural baseline's input: the guide's first positional argument (the data batch),
    without gradient, one row per datapoint."""
    if not args or not hasattr(args[0], "shape"):
        raise ValueError("the neural baseline reads the guide's first positional argument "
                         "(the data batch); call the guide as guide(x, ...)")
    x = ops.stop_gradient(args[0])
    return x.reshape((x.shape[0], -1)) if len(x.shape) > 1 else x.reshape((1, -1))


def score_term(ops: Any, score: Any, signal: Any, baseline: Any, *,
               neural: bool) -> tuple[Any, Any]:
    r"""A non-reparameterized site's surrogate term Σ score · ⊥(f − b) (Williams 1992; Mnih &
    Gregor 2014), ``score`` the log q whose gradient is the score function and ``f`` the
    learning signal, and the neural baseline's least-squares loss Σ (⊥f − b)² (0 without a
    network)."""
    surrogate = _total(ops, score * ops.stop_gradient(signal - baseline))
    residual = signal - baseline
    return surrogate, (_total(ops, residual * residual) if neural else 0.0)
