r"""Objective math written once for both backends, through ``ops``.

The backends' ELBO classes (:mod:`ppl_vae.models.pyro_elbos`, :mod:`ppl_vae.models.numpyro_elbos`)
run the programs and flatten their traces in their library's format; everything they compute
from the flattened sites is here: the site checks and refusals, the log weights of the
importance-weighted bounds and their gradients (IWAE, VIMCO, DReG), the surrogate that turns a
(bound, surrogate) pair into a loss, the per-datapoint and neural baselines of the
score-function estimator, and the ELBO with a weighted (β, warm-up) or floored (free bits) KL
term (:func:`kl_weighted_loss`).

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
variational inference and learning in belief networks. Higgins et al. (2017), β-VAE. Bowman et
al. (2016) and Sønderby et al. (2016), KL warm-up. Kingma et al. (2016), Improved variational
inference with inverse autoregressive flow (free bits).
"""

from __future__ import annotations

import math
import numbers
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
        closed_form_kl(name, q, p, kl_divergence)


def closed_form_kl(name: str, q: Any, p: Any, kl_divergence: Any) -> Any:
    """KL(q ‖ p) of site ``name`` by the library's registered closed form; ``ValueError``
    (never a silent Monte Carlo fallback) where none is registered."""
    try:
        return kl_divergence(q, p)
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
        raise ValueError("the importance- and KL-weighted ELBOs need one scale shared by every "
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


# --------------------------------------------------------------------------- β, warm-up, free bits


def check_free_bits(free_bits: Any) -> float:
    """``free_bits`` as a float, or ``ValueError`` unless it is a finite number >= 0."""
    if (isinstance(free_bits, bool) or not isinstance(free_bits, numbers.Real)
            or not math.isfinite(free_bits) or free_bits < 0):
        raise ValueError(f"free_bits must be a finite number >= 0 (nats per latent dimension), "
                         f"got {free_bits!r}")
    return float(free_bits)


def check_kl_weight(kl_weight: Any) -> None:
    """``ValueError`` unless a concrete ``kl_weight`` (a real number) is finite and >= 0; a
    traced or array weight (NumPyro under ``jit``/``scan``) is taken as it is."""
    if isinstance(kl_weight, bool) or (isinstance(kl_weight, numbers.Real) and not (
            math.isfinite(kl_weight) and kl_weight >= 0)):
        raise ValueError(f"kl_weight must be a finite number >= 0 (β, or the warm-up's β_t), "
                         f"got {kl_weight!r}")


def kl_options_estimator_error(estimator: Any) -> ValueError:
    """The refusal of a KL weight or free bits for an estimator other than ``reparam`` and
    ``analytic-kl``, saying why and what to use (read from its capability flags)."""
    name = estimator.name
    use = "use 'reparam' (Monte Carlo KL) or 'analytic-kl' (closed-form KL)"
    if estimator.multi_particle:
        why = ("the importance-weighted bound has no separate KL term to weight or floor "
               "(log p(x, z) − log q(z | x) sits inside the log-mean-exp)")
    elif estimator.score_function:
        why = ("its score-function surrogate and baselines are built for the plain ELBO's "
               "learning signal; a weighted or floored KL term would need its own")
        use += ", with relaxed gates (gate = 'relaxed') where the guide has discrete ones"
    elif estimator.reparameterized_only:
        why = ("it drops the score term ∇φ log q, which is zero-variance only at "
               "q = p(z | x), the optimum of the plain ELBO; a weighted KL has another "
               "optimum, and inside max(λ, ·) of free bits the dropped term no longer has mean "
               "zero")
    else:
        why = "it has no KL-weighted objective"
    return ValueError(f"a KL weight (kl_weighting) or free bits do not apply to the {name} "
                      f"estimator: {why}; {use}")


def kl_options_non_reparameterized_error(sites: Sequence[str]) -> ValueError:
    """The refusal of the KL-weighted ELBO for a guide with non-reparameterized sites."""
    return ValueError(f"the KL-weighted ELBO (kl_weighting / free bits) differentiates through "
                      f"every sample path, but the guide's sites {list(sites)} are not "
                      "reparameterized (discrete gates or score_function_sites), so their "
                      "parameters would get a biased gradient; use relaxed gates "
                      "(gate = 'relaxed') and no score_function_sites")


def kl_options_no_density_error(posterior: str) -> ValueError:
    """The refusal of a KL weight or free bits for a posterior without a density."""
    return ValueError(f"posterior {posterior!r} has point codes, no density q(z | x), so there is "
                      "no KL term to weight or floor; use codes = 'gaussian'")


def not_factorized_error(what: str) -> ValueError:
    """The refusal of free bits where a prior or posterior does not factorize over latent
    dimensions."""
    return ValueError(f"free bits floor the KL of each latent dimension, but {what} does not "
                      "factorize over latent dimensions, so there is no KL per dimension; use a "
                      "KL weight instead (kl_weighting=True: β or a warm-up schedule) with "
                      "free_bits=0")


def elementwise_base(site: str, d: Any, independent: type, wrappers: tuple[type, ...]) -> Any:
    """The elementwise base of a site distribution that factorizes over its event dimensions:
    ``d`` an ``independent`` (``to_event``) over a base with empty event shape, or itself of
    empty event shape, either under batch-expanding ``wrappers`` (unwrapped: they only
    broadcast), so that its log-density and its KL are sums of elementwise terms;
    :func:`not_factorized_error` otherwise (mixtures, the VampPrior's and the flow's
    functional densities, multivariate bases)."""
    while isinstance(d, wrappers):
        d = d.base_dist
    base = d.base_dist if isinstance(d, independent) else d
    while isinstance(base, wrappers):
        base = base.base_dist
    if tuple(base.event_shape):
        raise not_factorized_error(f"site {site!r} ({type(d).__name__})")
    return base


def site_kl(ops: Any, site: str, q: Any, p: Any, value: Any, *, analytic: bool,
            per_dimension: bool, log_q: Callable[[Any], Any] | None = None) -> Any:
    r"""The KL terms of one latent site at the draw ``value``: KL(q ‖ p) in closed form
    (``analytic``, the library's ``kl_divergence``) or log q(z) − log p(z) (Monte Carlo);
    per element of the event (``per_dimension``: of the :func:`elementwise_base` pair, shape
    of ``value``) or for the whole site (a trailing group axis of size 1). ``log_q(d)``: the
    guide's log-density under ``d`` where the backend has a better one than
    ``d.log_prob(value)`` (NumPyro's sample intermediates)."""
    if per_dimension:
        wrappers = (ops.dist.ExpandedDistribution,)
        q, p = (elementwise_base(site, d, ops.dist.Independent, wrappers) for d in (q, p))
        shape = tuple(value.shape)
    else:
        shape = tuple(value.shape)[:len(value.shape) - q.event_dim]
    if analytic:
        kl = closed_form_kl(site, q, p, ops.kl_divergence)
    else:
        kl = (q.log_prob(value) if log_q is None else log_q(q)) - p.log_prob(value)
    kl = ops.broadcast_to(kl, shape)
    return kl if per_dimension else kl[..., None]


def minibatch_kl(ops: Any, kl: Any) -> Any:
    r"""Σ_b (1/K) Σ_k KL_kbj: a site's KL terms ``(K, B, ...)`` (particles, datapoints, its
    groups) summed over the minibatch and averaged over particles, one value per group j."""
    return ops.sum(kl, (0, 1)) / kl.shape[0]


def kl_weighted_loss(ops: Any, log_likelihood: Any, kl_terms: Sequence[Any], scale: Any,
                     kl_weight: Any = 1.0, free_bits: float = 0.0) -> Any:
    r"""The loss −L_β of a minibatch: β-VAE's weighted KL (Higgins et al. 2017), a warm-up's
    weight β_t (Bowman et al. 2016; Sønderby et al. 2016) and free bits (Kingma et al. 2016).

    .. math:: −\frac NB \sum_b \overline{\log p(x_b \mid z_b)}
              + w \, N \sum_j \max\Big(λ, \frac1B \sum_b \overline{\mathrm{KL}}_{bj}\Big)
            = −\frac NB \Big[\sum_b \overline{\log p(x_b \mid z_b)}
              − w \sum_j \max\Big(Bλ, \sum_b \overline{\mathrm{KL}}_{bj}\Big)\Big],

    bars the means over the K particles, N/B = ``scale`` (the data plate's subsampling
    scale), w = ``kl_weight``, j over the groups of every site: the latent dimensions for free
    bits, any grouping with λ = ``free_bits`` = 0, which turns the floor off (a Monte Carlo
    KL, log q(z | x) − log p(z) at the draw, may be negative in a dimension; it is not
    clipped). With w = 1 and λ = 0 this is the negative ELBO, Trace_ELBO's (Monte Carlo KL) or
    TraceMeanField_ELBO's (closed-form KL) on the same draws. A floored group gets no KL
    gradient: it is free to carry λ nats (Kingma et al. 2016, appendix C).

    ``log_likelihood`` ``(K, B)``: Σ over observed sites of the unscaled log p(x_b | z_kb);
    ``kl_terms``: one ``(K, B, ...)`` array per latent site, its trailing dimensions the groups.

    References
    ----------
    Higgins et al. (2017), β-VAE: learning basic visual concepts with a constrained
    variational framework. Bowman et al. (2016), Generating sentences from a continuous space.
    Sønderby et al. (2016), Ladder variational autoencoders. Kingma, Salimans, Jozefowicz,
    Chen, Sutskever & Welling (2016), Improved variational inference with inverse
    autoregressive flow.
    """
    shape = tuple(getattr(log_likelihood, "shape", ()))
    if len(shape) != 2 or any(tuple(kl.shape[:2]) != shape for kl in kl_terms):
        raise ValueError("the KL-weighted ELBO needs every sample site inside one data plate "
                         "(dim -1) and no other plate: per-datapoint log-likelihoods (K, B) "
                         f"and KL terms (K, B, ...), got {shape} and "
                         f"{[tuple(kl.shape) for kl in kl_terms]}")
    batch = shape[1]
    expected = ops.sum(log_likelihood, (0, 1)) / shape[0]
    penalty = 0.0
    for kl in kl_terms:
        total = minibatch_kl(ops, kl)
        if free_bits > 0:
            total = ops.clip(total, batch * free_bits, None)
        penalty = penalty + _total(ops, total)
    return -scale * (expected - kl_weight * penalty)
