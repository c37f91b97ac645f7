"""NumPyro ELBOs for the estimators of :mod:`ppl_vae.estimators`.

NumPyro's ``Trace_ELBO``, ``TraceMeanField_ELBO`` and ``RenyiELBO`` differentiate through
every sample path and add no score term on a non-reparameterized site: on a discrete or
score-function site their gradient is silently biased. ``make_elbo`` therefore picks
``TraceGraph_ELBO`` whenever the guide has such a site, and :func:`check_elbo` refuses the
biased combinations.

NumPyro has no baselines, no sticking-the-landing and no doubly reparameterized gradient;
this module adds them as ELBO classes for any model/guide pair:
:class:`TraceGraphBaseline_ELBO` (state in ``numpyro.mutable`` sites of the guide returned by
:func:`baseline_guide`), :class:`TraceSTL_ELBO` and :class:`DReG_ELBO`.

References
----------
Mnih & Gregor (2014), Neural variational inference and learning in belief networks.
Schulman, Heess, Weber & Abbeel (2015), Gradient estimation using stochastic computation
graphs. Roeder, Wu & Duvenaud (2017), Sticking the landing. Tucker, Lawson, Gu & Maddison
(2018), Doubly reparameterized gradient estimators for Monte Carlo objectives.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.infer
import numpyro.primitives
from jax import random
from jax.lax import stop_gradient
from numpyro.distributions.kl import kl_divergence
from numpyro.handlers import block, replay, seed, substitute, trace
from numpyro.infer.elbo import ELBO, MultiFrameTensor, get_nonreparam_deps
from numpyro.infer.util import get_importance_trace
from numpyro.util import check_model_guide_match

from ppl_vae import networks
from ppl_vae.estimators import (
    BASELINE_PREFIX,
    IWAE,
    STL,
    AnalyticKL,
    DReG,
    Reparam,
    Score,
    ScoreBaseline,
)
from ppl_vae.models import objectives
from ppl_vae.models.numpyro_backend import JaxOps, has_non_reparameterized_sites, score_function

_PATHWISE_ONLY = (numpyro.infer.Trace_ELBO, numpyro.infer.TraceMeanField_ELBO,
                  numpyro.infer.RenyiELBO)


def check_elbo(elbo: Any, guide: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``TypeError`` if ``elbo`` would give a biased gradient for ``guide``."""
    if isinstance(elbo, _PATHWISE_ONLY) and has_non_reparameterized_sites(guide, *args, **kwargs):
        raise TypeError(
            f"NumPyro's {type(elbo).__name__} adds no score-function term for the guide's "
            "non-reparameterized sites (discrete or score-function-marked), so its gradient "
            "would be biased; use numpyro.infer.TraceGraph_ELBO (or "
            "ppl_vae.models.numpyro_elbos.make_elbo, which chooses it)")


def _latent_sites(tr: dict) -> list[tuple[str, dict]]:
    return [(name, site) for name, site in tr.items()
            if site["type"] == "sample" and not site["is_observed"]]


def _sample_sites(tr: dict) -> list[dict]:
    return [site for site in tr.values() if site["type"] == "sample"]


def _require_reparameterized(tr: dict, estimator: str) -> None:
    objectives.require_reparameterized(((name, site["fn"]) for name, site in _latent_sites(tr)),
                                       estimator)


def _scale(site: dict) -> Any:
    return 1.0 if site["scale"] is None else site["scale"]


# ------------------------------------------------------------------ STL and DReG


def _guide_values(rng_key: jax.Array, params: dict, guide: Any, args: tuple, kwargs: dict,
                  estimator: str) -> dict[str, jax.Array]:
    """One guide run with live parameters: latent values (with their paths) and plates."""
    tr = trace(seed(substitute(guide, data=params), rng_key)).get_trace(*args, **kwargs)
    _require_reparameterized(tr, estimator)
    return {name: site["value"] for name, site in tr.items()
            if site["type"] == "plate" or (site["type"] == "sample" and not site["is_observed"])}


def _rescored_traces(rng_key: jax.Array, params: dict, model: Any, guide: Any, args: tuple,
                     kwargs: dict, values: dict) -> tuple[dict, dict]:
    """The model at ``values`` and the guide re-scored there with stop-gradient parameters."""
    model_key, guide_key = random.split(rng_key)
    frozen = {**jax.tree.map(stop_gradient, params), **values}
    guide_trace = trace(substitute(seed(guide, guide_key), data=frozen)).get_trace(*args,
                                                                                   **kwargs)
    model_trace = trace(substitute(seed(model, model_key), data={**params, **values}))
    model_trace = model_trace.get_trace(*args, **kwargs)
    check_model_guide_match(model_trace, guide_trace)
    return model_trace, guide_trace


class TraceSTL_ELBO(ELBO):
    r"""Sticking-the-landing ELBO (Roeder et al. 2017).

    Per particle, log p(x, z) − log q_{⊥φ}(z | x) with z = g(ε, φ) drawn by the guide with
    live parameters and log q re-scored under ``substitute(stop_gradient(params))``: the
    gradient flows through the sample path only. Unbiased (the dropped term ∇_φ log q_φ
    has mean zero) and exactly zero when q is the posterior. Needs a reparameterized guide.
    """

    def loss(self, rng_key: jax.Array, param_map: dict, model: Any, guide: Any, *args: Any,
             **kwargs: Any) -> jax.Array:
        def particle(key: jax.Array) -> jax.Array:
            sample_key, score_key = random.split(key)
            values = _guide_values(sample_key, param_map, guide, args, kwargs, "stl")
            model_trace, guide_trace = _rescored_traces(score_key, param_map, model, guide,
                                                        args, kwargs, values)
            return (sum(jnp.sum(_scale(s) * s["fn"].log_prob(s["value"]))
                        for s in _sample_sites(model_trace))
                    - sum(jnp.sum(_scale(s) * s["fn"].log_prob(s["value"]))
                          for s in _sample_sites(guide_trace)))

        keys = random.split(rng_key, self.num_particles)
        return -jnp.mean(self.vectorize_particles_fn(particle, keys))


@jax.custom_vjp
def _scale_path(value: jax.Array, weight: jax.Array) -> jax.Array:
    """Identity whose backward pass multiplies the cotangent by ``weight``."""
    return value


def _scale_path_fwd(value: jax.Array, weight: jax.Array) -> tuple[jax.Array, jax.Array]:
    return value, weight


def _scale_path_bwd(weight: jax.Array, cotangent: jax.Array) -> tuple[jax.Array, jax.Array]:
    return cotangent * weight, jnp.zeros_like(weight)


_scale_path.defvjp(_scale_path_fwd, _scale_path_bwd)


def _log_weights(model_trace: dict, guide_trace: dict) -> tuple[jax.Array, float]:
    """log w per element of the plates shared by every sample site (as ``RenyiELBO``), unscaled,
    and the one plate-subsampling scale to apply after averaging the weights."""
    sites = [(1.0, s) for s in _sample_sites(model_trace)] + [
        (-1.0, s) for s in _sample_sites(guide_trace)]
    shared = set.intersection(*(set(s["cond_indep_stack"]) for _, s in sites))
    keep = {f.dim for f in shared}
    log_w = objectives.shared_plate_log_weight(
        JaxOps, [(sign, site["fn"].log_prob(site["value"])) for sign, site in sites], keep)
    return log_w, objectives.common_scale(site["scale"] for _, site in sites)


def _broadcast_weight(weight: jax.Array, value: jax.Array, event_dim: int) -> jax.Array:
    weight = jnp.reshape(weight, jnp.shape(weight) + (1,) * event_dim)
    return jnp.broadcast_to(weight, jnp.shape(value))


class DReG_ELBO(ELBO):
    r"""Importance-weighted bound with the doubly reparameterized gradient (Tucker et al. 2018).

    With log w_k = log p(x, z_k) − log q(z_k | x), z_k = g(ε_k, φ) and w̃_k = w_k / Σ_j w_j,
    the objective log (1/K) Σ_k w_k (per element of the plates shared by every site, like
    ``RenyiELBO``; subsampling scales applied after the log-mean-exp) gets

    .. math:: ∇_θ = Σ_k w̃_k ∇_θ \log w_k,\qquad
              ∇_φ = Σ_k w̃_k^2 \frac{∂ \log w_k}{∂ z_k} \frac{∂ z_k}{∂ φ},

    with log q re-scored under stop-gradient parameters. The surrogate Σ_k w̃_k log w_k is
    evaluated at values whose path cotangent is multiplied by w̃_k (a custom VJP), which
    needs the weights first: log w is computed once for the values, once for the gradient.
    At K = 1 this is :class:`TraceSTL_ELBO`.
    """

    def loss(self, rng_key: jax.Array, param_map: dict, model: Any, guide: Any, *args: Any,
             **kwargs: Any) -> jax.Array:
        # the same keys per particle as TraceSTL_ELBO, so that K = 1 gives identical draws
        pairs = jax.vmap(random.split)(random.split(rng_key, self.num_particles))
        sample_keys, score_keys = pairs[:, 0], pairs[:, 1]
        values = jax.vmap(lambda k: _guide_values(k, param_map, guide, args, kwargs, "dreg"))(
            sample_keys)
        event_dims = _event_dims(param_map, guide, args, kwargs)

        def log_weight(key: jax.Array, vals: dict, weight: jax.Array | None = None):
            if weight is not None:
                vals = {name: (_scale_path(v, _broadcast_weight(weight, v, event_dims[name]))
                               if name in event_dims else v) for name, v in vals.items()}
            model_trace, guide_trace = _rescored_traces(key, param_map, model, guide, args,
                                                        kwargs, vals)
            return _log_weights(model_trace, guide_trace)

        log_w, scale = jax.vmap(log_weight)(score_keys, values)
        log_mean, weights = objectives.normalized_weights(JaxOps, stop_gradient(log_w),
                                                          self.num_particles)
        log_w_path, _ = jax.vmap(log_weight)(score_keys, values, weights)
        surrogate = jnp.sum(weights * log_w_path, axis=0)
        objective = log_mean + surrogate - stop_gradient(surrogate)
        return -scale[0] * jnp.sum(objective)


def _event_dims(params: dict, guide: Any, args: tuple, kwargs: dict) -> dict[str, int]:
    """Event dimensions of the guide's latent sites (static; the run itself is dead code)."""
    with block():
        tr = trace(substitute(seed(guide, 0), data=params)).get_trace(*args, **kwargs)
    return {name: site["fn"].event_dim for name, site in _latent_sites(tr)}


# ------------------------------------------------------------------ score function + baseline


def _average_name(site: str) -> str:
    return f"{BASELINE_PREFIX}{site}.average"


def _features(args: tuple) -> jax.Array:
    if not args:
        raise ValueError("the neural baseline reads the guide's first positional argument "
                         "(the data batch); call the guide as guide(x, ...)")
    x = stop_gradient(jnp.asarray(args[0]))
    return jnp.reshape(x, (x.shape[0], -1)) if x.ndim > 1 else jnp.reshape(x, (1, -1))


def baseline_guide(guide: Any, estimator: ScoreBaseline) -> Any:
    """Wrap ``guide`` so it declares the state :class:`TraceGraphBaseline_ELBO` needs.

    For each non-reparameterized latent site: ``baseline.<site>.average`` (a
    ``numpyro.mutable`` of the site's batch shape, zeros) and, with ``estimator.neural``,
    the parameters of :func:`ppl_vae.networks.init_baseline`'s network of the data
    (``baseline.<site>.0.weight`` ..., the Pyro backend's names and initial values).
    """

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        tr = trace(guide).get_trace(*args, **kwargs)
        for name, site in _latent_sites(tr):
            if site["fn"].has_rsample:
                continue
            dtype = jnp.result_type(float)
            average = jnp.zeros(site["fn"].batch_shape, dtype)
            numpyro.primitives.mutable(_average_name(name), average)
            if estimator.neural:
                prefix = f"{BASELINE_PREFIX}{name}"
                for param, value in networks.init_baseline(prefix, _features(args).shape[-1],
                                                           estimator.hidden).items():
                    numpyro.param(param, jnp.asarray(value, dtype))

    return wrapped


class TraceGraphBaseline_ELBO(ELBO):
    r"""``TraceGraph_ELBO`` with baselines (Mnih & Gregor 2014; Schulman et al. 2015).

    For a non-reparameterized site with downstream cost f (the log-ratio terms it influences,
    Rao–Blackwellized over plates), the surrogate adds log q(z) · ⊥(f − b) — unbiased for any
    b that does not depend on z. ``b`` is a decaying average, b ← β b + (1 − β) f̄ (f̄ the
    mean over particles), kept per datapoint in the ``numpyro.mutable`` sites declared by
    :func:`baseline_guide`; with ``neural=True`` an MLP of the data is added and fitted by
    the baseline loss Σ (⊥f − b)², whose gradient reaches only the network's parameters.
    The returned loss is −ELBO; the new averages come back as the mutable state, so
    ``numpyro.infer.SVI`` carries them from step to step.
    """

    can_infer_discrete = True

    def __init__(self, num_particles: int = 1, beta: float = 0.9, neural: bool = False,
                 hidden: int = 64) -> None:
        super().__init__(num_particles=num_particles)
        self.beta = beta
        self.neural = neural
        self.hidden = hidden

    def loss_with_mutable_state(self, rng_key: jax.Array, param_map: dict, model: Any,
                                guide: Any, *args: Any, **kwargs: Any) -> dict:
        def particle(key: jax.Array):
            model_key, guide_key = random.split(key)
            model_trace, guide_trace = get_importance_trace(
                seed(model, model_key), seed(guide, guide_key), args, kwargs, param_map)
            check_model_guide_match(model_trace, guide_trace)
            latents = {name: site["value"] for name, site in _latent_sites(guide_trace)}
            model_deps, guide_deps = get_nonreparam_deps(model, guide, args, kwargs, param_map,
                                                         latents=latents)
            elbo = jnp.zeros(())
            costs: dict[str, MultiFrameTensor] = defaultdict(MultiFrameTensor)
            for name, site in model_trace.items():
                if site["type"] == "sample":
                    elbo = elbo + jnp.sum(site["log_prob"])
                    for key_site in model_deps[name]:
                        costs[key_site].add((site["cond_indep_stack"], site["log_prob"]))
            for name, site in guide_trace.items():
                if site["type"] == "sample":
                    log_q = jnp.sum(site["log_prob"])
                    elbo = elbo - (log_q if site["fn"].has_rsample else stop_gradient(log_q))
                    for key_site in guide_deps[name]:
                        costs[key_site].add((site["cond_indep_stack"], -site["log_prob"]))
            baseline_loss = jnp.zeros(())
            signals = {}
            for node, cost in costs.items():
                site = guide_trace[node]
                signal = stop_gradient(cost.sum_to(site["cond_indep_stack"]))
                baseline = self._baseline(param_map, node, args, signal)
                surrogate = jnp.sum(site["log_prob"] * stop_gradient(signal - baseline))
                elbo = elbo + surrogate - stop_gradient(surrogate)
                if self.neural:
                    baseline_loss = baseline_loss + jnp.sum((signal - baseline) ** 2)
                signals[node] = signal
            return elbo, baseline_loss, signals

        keys = random.split(rng_key, self.num_particles)
        elbos, baseline_losses, signals = self.vectorize_particles_fn(particle, keys)
        baseline_loss = jnp.mean(baseline_losses)
        state = {}
        for node, signal in signals.items():
            old = param_map[_average_name(node)]
            new = self.beta * old + (1 - self.beta) * jnp.mean(signal, axis=0)
            state[_average_name(node)] = jnp.broadcast_to(new, jnp.shape(old)).astype(old.dtype)
        loss = -jnp.mean(elbos) + baseline_loss - stop_gradient(baseline_loss)
        return {"loss": loss, "mutable_state": state}

    def _baseline(self, params: dict, node: str, args: tuple, signal: jax.Array) -> jax.Array:
        if _average_name(node) not in params:
            raise ValueError(f"no baseline state for site {node!r}: pair TraceGraphBaseline_ELBO "
                             "with the guide from ppl_vae.models.numpyro_elbos.baseline_guide "
                             "(make_elbo returns it)")
        baseline = params[_average_name(node)]
        if self.neural:
            prefix = f"{BASELINE_PREFIX}{node}"
            baseline = baseline + networks.apply_baseline(JaxOps, params.__getitem__, prefix,
                                                          self.hidden, _features(args))
        if jnp.shape(baseline) != jnp.shape(signal):
            raise ValueError(f"site {node!r}: the baseline has shape {jnp.shape(baseline)} but "
                             f"the learning signal has shape {jnp.shape(signal)}")
        return baseline


# ------------------------------------------------------------------ choosing an ELBO


def check_closed_form_kl(model: Any, guide: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``ValueError`` unless every latent site has a closed-form KL(q ‖ p)."""
    with block(), seed(rng_seed=0):
        guide_trace = trace(guide).get_trace(*args, **kwargs)
        model_trace = trace(replay(model, guide_trace)).get_trace(*args, **kwargs)
    objectives.check_closed_form_kl(
        ((name, site["fn"], model_trace[name]["fn"]) for name, site
         in _latent_sites(guide_trace)), kl_divergence)


def make_elbo(estimator: Any, guide: Any, num_particles: int = 1, *,
              example_args: tuple = (), example_kwargs: dict | None = None) -> tuple[Any, Any]:
    """The NumPyro ELBO for ``estimator`` and the guide to pair it with.

    ``example_args`` (e.g. a minibatch) let the guide be traced once to detect
    non-reparameterized sites: ``reparam`` then uses ``TraceGraph_ELBO``, and the estimators
    that would be biased there (``reparameterized_only`` ones, and those whose library ELBO
    adds no score term) are refused.
    """
    kwargs = example_kwargs or {}
    if isinstance(estimator, Score):
        return numpyro.infer.TraceGraph_ELBO(num_particles=num_particles), score_function(guide)
    if isinstance(estimator, ScoreBaseline):
        elbo = TraceGraphBaseline_ELBO(num_particles, beta=estimator.beta,
                                       neural=estimator.neural, hidden=estimator.hidden)
        return elbo, baseline_guide(score_function(guide), estimator)
    discrete = has_non_reparameterized_sites(guide, *example_args, **kwargs)
    if isinstance(estimator, Reparam):
        cls = numpyro.infer.TraceGraph_ELBO if discrete else numpyro.infer.Trace_ELBO
        return cls(num_particles=num_particles), guide
    if isinstance(estimator, AnalyticKL):
        elbo = numpyro.infer.TraceMeanField_ELBO(num_particles=num_particles)
    elif isinstance(estimator, IWAE):
        elbo = numpyro.infer.RenyiELBO(alpha=0.0, num_particles=num_particles)
    elif isinstance(estimator, STL):
        elbo = TraceSTL_ELBO(num_particles=num_particles)
    elif isinstance(estimator, DReG):
        elbo = DReG_ELBO(num_particles=num_particles)
    else:
        raise TypeError(f"no NumPyro ELBO for estimator {estimator!r}")
    if discrete and (estimator.reparameterized_only or isinstance(elbo, _PATHWISE_ONLY)):
        raise TypeError(f"the {estimator.name} estimator needs every latent site "
                        "reparameterized; this guide has a discrete or score-function site "
                        "(use the 'reparam' or 'score' estimator)")
    return elbo, guide


__all__ = ["BASELINE_PREFIX", "DReG_ELBO", "TraceGraphBaseline_ELBO", "TraceSTL_ELBO",
           "baseline_guide", "check_closed_form_kl", "check_elbo", "make_elbo"]
