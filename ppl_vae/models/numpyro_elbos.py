"""NumPyro ELBOs for the estimators of :mod:`ppl_vae.estimators`: trace flattening and the
registry; the math is :mod:`ppl_vae.models.objectives`.

NumPyro's ``Trace_ELBO``, ``TraceMeanField_ELBO`` and ``RenyiELBO`` differentiate through
every sample path and add no score term on a non-reparameterized site: on a discrete or
score-function site their gradient is silently biased; its ``TraceGraph_ELBO`` adds the
score term but scales it twice under subsampling. ``make_elbo`` therefore picks this
module's :class:`TraceGraph_ELBO` whenever the guide has such a site, and :func:`check_elbo`
refuses the biased combinations.

This module adds, for any model/guide pair: :class:`TraceGraph_ELBO` (score terms scaled
once) and :class:`TraceGraphBaseline_ELBO` (per-datapoint baselines in ``numpyro.mutable``
sites of the guide returned by :func:`baseline_guide`), :class:`TraceSTL_ELBO`,
:class:`DReG_ELBO`, :class:`IWAE_ELBO` / :class:`VIMCO_ELBO` (the same importance-weighted
objective as the Pyro backend's, VIMCO's score term for discrete sites), and
:class:`KLWeighted_ELBO` (β, warm-up weights and free bits).

References
----------
Schulman, Heess, Weber & Abbeel (2015), Gradient estimation using stochastic computation
graphs. Roeder, Wu & Duvenaud (2017), Sticking the landing.
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

from ppl_vae import estimators as est
from ppl_vae import networks
from ppl_vae.models import objectives
from ppl_vae.models.numpyro_backend import JaxOps, non_reparameterized_sites, score_function

_PATHWISE_ONLY = (numpyro.infer.Trace_ELBO, numpyro.infer.TraceMeanField_ELBO,
                  numpyro.infer.RenyiELBO)


def check_elbo(elbo: Any, guide: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``TypeError`` if ``elbo`` would give a biased gradient for ``guide``."""
    if isinstance(elbo, _PATHWISE_ONLY) and non_reparameterized_sites(guide, *args, **kwargs):
        raise TypeError(
            f"NumPyro's {type(elbo).__name__} adds no score-function term for the guide's "
            "non-reparameterized sites (discrete or score-function-marked), so its gradient "
            "would be biased; use ppl_vae.models.numpyro_elbos.TraceGraph_ELBO (or "
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


def _log_weights(model_trace: dict, guide_trace: dict) -> tuple[jax.Array, float, jax.Array]:
    """:func:`ppl_vae.models.objectives.log_weights` of the two traces' sample sites."""
    return objectives.log_weights(JaxOps, [
        objectives.WeightedSite(sign, site["fn"].log_prob(site["value"]),
                                frozenset(f.dim for f in site["cond_indep_stack"]),
                                site["scale"], site["fn"].has_rsample)
        for sign, tr in ((1.0, model_trace), (-1.0, guide_trace)) for site in _sample_sites(tr)])


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


class DReG_ELBO(ELBO):
    r"""Importance-weighted bound with the doubly reparameterized gradient (Tucker et al. 2018;
    :func:`~ppl_vae.models.objectives.doubly_reparameterized`). The surrogate is evaluated at
    values whose path gradient is multiplied by w̃_k
    (:func:`~ppl_vae.models.objectives.scale_path`), which needs the weights first: log w is
    computed once for the values, once for the gradient. At K = 1 this is
    :class:`TraceSTL_ELBO`.
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
                vals = {name: (objectives.scale_path(JaxOps, v, weight, event_dims[name])
                               if name in event_dims else v) for name, v in vals.items()}
            model_trace, guide_trace = _rescored_traces(key, param_map, model, guide, args,
                                                        kwargs, vals)
            return _log_weights(model_trace, guide_trace)

        log_w, scale, _ = jax.vmap(log_weight)(score_keys, values)
        bound, surrogate = objectives.doubly_reparameterized(
            JaxOps, log_w, self.num_particles, scale[0],
            lambda weights: jax.vmap(log_weight)(score_keys, values, weights)[0])
        return objectives.surrogate_loss(bound, surrogate, stop_gradient)


class _ScorePathsStopped(numpyro.primitives.Messenger):
    """Stop the gradient of the sample values of non-reparameterized latent sites, which
    NumPyro draws with a live path (``sample`` is differentiable for every distribution)."""

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and not msg["fn"].has_rsample:
            msg["value"] = stop_gradient(msg["value"])


class IWAE_ELBO(ELBO):
    r"""The importance-weighted bound (Burda et al. 2016) with its plain gradient
    (:func:`~ppl_vae.models.objectives.importance_weighted`), the Pyro backend's objective.
    Refuses guides with non-reparameterized sites (their parameters would get no gradient):
    use :class:`VIMCO_ELBO`."""

    vimco = False

    def loss(self, rng_key: jax.Array, param_map: dict, model: Any, guide: Any, *args: Any,
             **kwargs: Any) -> jax.Array:
        def particle(key: jax.Array) -> tuple[jax.Array, float, jax.Array]:
            model_key, guide_key = random.split(key)
            guide_trace = trace(seed(substitute(_ScorePathsStopped(guide), data=param_map),
                                     guide_key)).get_trace(*args, **kwargs)
            if not self.vimco:
                _require_reparameterized(guide_trace, "iwae")
            model_trace = trace(seed(replay(substitute(model, data=param_map), guide_trace),
                                     model_key)).get_trace(*args, **kwargs)
            check_model_guide_match(model_trace, guide_trace)
            return _log_weights(model_trace, guide_trace)

        log_w, scale, log_q_score = jax.vmap(particle)(random.split(rng_key,
                                                                    self.num_particles))
        bound, surrogate = objectives.importance_weighted(
            JaxOps, log_w, log_q_score, self.num_particles, scale[0], vimco=self.vimco)
        return objectives.surrogate_loss(bound, surrogate, stop_gradient)


class VIMCO_ELBO(IWAE_ELBO):
    r"""VIMCO (Mnih & Rezende 2016) for NumPyro programs: :class:`IWAE_ELBO` plus the
    leave-one-out score terms of the sites whose value paths :class:`_ScorePathsStopped`
    cut. Needs K ≥ 2."""

    vimco = True
    can_infer_discrete = True


def _event_dims(params: dict, guide: Any, args: tuple, kwargs: dict) -> dict[str, int]:
    """Event dimensions of the guide's latent sites (static; the run itself is dead code)."""
    with block():
        tr = trace(substitute(seed(guide, 0), data=params)).get_trace(*args, **kwargs)
    return {name: site["fn"].event_dim for name, site in _latent_sites(tr)}


# ------------------------------------------------------------------ β, warm-up, free bits


def _log_prob(site: dict, fn: Any = None) -> jax.Array:
    """log-density of the site's value under ``fn`` (default the site's), through the sample
    intermediates where the guide kept them (as NumPyro's ELBOs: no inverse of the transform
    of a relaxed gate, which saturates)."""
    fn = site["fn"] if fn is None else fn
    if site.get("intermediates"):
        return fn.log_prob(site["value"], site["intermediates"])
    return fn.log_prob(site["value"])


class KLWeighted_ELBO(ELBO):
    r"""The ELBO with a weighted KL term (β-VAE, KL warm-up) and free bits:
    E_q[log p(x | z)] − w · Σ_j max(λ, KL̄_j) (:func:`~ppl_vae.models.objectives.kl_weighted_loss`),
    the same objective as the Pyro backend's ``KLWeighted_ELBO``.

    ``loss(rng_key, param_map, model, guide, *args, kl_weight=w, **kwargs)``: the keyword
    ``kl_weight`` (w, default 1.0: β, or the warm-up's β_t; a Python number or a traced scalar,
    so ``SVI.update(state, x, idx, c=c, kl_weight=w)`` runs under ``jit`` and ``lax.scan``) is
    removed before the model and guide run. ``analytic``: closed-form KL (``kl_divergence``; per
    dimension, that of the ``Independent`` site's base distributions), else
    log q(z | x) − log p(z) at the draw. ``free_bits`` λ > 0 floors the KL of every latent
    dimension, averaged over the minibatch and the particles, at λ nats (Kingma et al. 2016);
    the sites must then factorize over dimensions. Every guide site must be reparameterized.
    The particles draw with the keys of NumPyro's ``Trace_ELBO`` (the key itself for K = 1),
    so at w = 1, λ = 0 the value is its (or ``TraceMeanField_ELBO``'s) on the same draws.
    """

    def __init__(self, num_particles: int = 1, vectorize_particles: Any = True, *,
                 analytic: bool = False, free_bits: float = 0.0) -> None:
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)
        self.analytic = analytic
        self.free_bits = objectives.check_free_bits(free_bits)

    def loss(self, rng_key: jax.Array, param_map: dict, model: Any, guide: Any, *args: Any,
             **kwargs: Any) -> jax.Array:
        kl_weight = kwargs.pop("kl_weight", 1.0)
        objectives.check_kl_weight(kl_weight)
        scales: list[float] = []  # static: the plate's N/B, read while tracing

        def particle(key: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
            model_key, guide_key = random.split(key)
            guide_trace = trace(substitute(seed(guide, guide_key), data=param_map)).get_trace(
                *args, **kwargs)
            model_trace = trace(substitute(replay(seed(model, model_key), guide_trace),
                                           data=param_map)).get_trace(*args, **kwargs)
            check_model_guide_match(model_trace, guide_trace)
            bad = [name for name, site in _latent_sites(guide_trace)
                   if not site["fn"].has_rsample]
            if bad:
                raise objectives.kl_options_non_reparameterized_error(bad)
            log_likelihood, kl_terms = 0.0, []
            for name, site in model_trace.items():
                if site["type"] != "sample":
                    continue
                if site["is_observed"]:
                    log_likelihood = log_likelihood + _log_prob(site)
                    continue
                guide_site = guide_trace[name]
                kl_terms.append(objectives.site_kl(
                    JaxOps, name, guide_site["fn"], site["fn"], site["value"],
                    analytic=self.analytic, per_dimension=self.free_bits > 0,
                    log_q=lambda d, s=guide_site: _log_prob(s, d)))
            scales.append(objectives.common_scale(
                site["scale"] for tr in (model_trace, guide_trace) for site in _sample_sites(tr)))
            return log_likelihood, kl_terms

        if self.num_particles == 1:
            log_likelihood, kl_terms = jax.tree.map(lambda v: v[None], particle(rng_key))
        else:
            log_likelihood, kl_terms = self.vectorize_particles_fn(
                particle, random.split(rng_key, self.num_particles))
        return objectives.kl_weighted_loss(JaxOps, log_likelihood, kl_terms, scales[0],
                                           kl_weight, self.free_bits)


# ------------------------------------------------------------------ score function + baseline


def _baseline_frames(tr: dict, site: dict) -> list[objectives.BaselineFrame]:
    """The site's plates; a subsampled one carries the minibatch's indices (its plate site's
    value)."""
    frames = []
    for f in site["cond_indep_stack"]:
        plate = tr.get(f.name)
        full = plate["args"][0] if plate is not None else f.size
        subsampled = plate is not None and plate["args"][0] != plate["args"][1]
        frames.append(objectives.BaselineFrame(f.name, f.dim, full,
                                               plate["value"] if subsampled else None))
    return frames


def baseline_guide(guide: Any, estimator: est.ScoreBaseline) -> Any:
    """Wrap ``guide`` so it declares the state :class:`TraceGraphBaseline_ELBO` needs.

    For each non-reparameterized latent site: ``baseline.<site>.average`` (a
    ``numpyro.mutable`` of zeros, one entry per element of the site's plates, a subsampled
    plate counting its full size: one average per datapoint) and, with ``estimator.neural``,
    the parameters of :func:`ppl_vae.networks.init_baseline`'s network of the data
    (``baseline.<site>.0.weight`` ..., the Pyro backend's names and initial values).
    """

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        tr = trace(guide).get_trace(*args, **kwargs)
        for name, site in _latent_sites(tr):
            if site["fn"].has_rsample:
                continue
            dtype = jnp.result_type(float)
            shape = objectives.baseline_table_shape(_baseline_frames(tr, site))
            numpyro.primitives.mutable(est.baseline_average_name(name), jnp.zeros(shape, dtype))
            if estimator.neural:
                prefix = f"{est.BASELINE_PREFIX}{name}"
                features = objectives.baseline_features(JaxOps, args)
                for param, value in networks.init_baseline(prefix, features.shape[-1],
                                                           estimator.hidden).items():
                    numpyro.param(param, jnp.asarray(value, dtype))

    return wrapped


class TraceGraph_ELBO(ELBO):
    r"""The Rao–Blackwellized score-function ELBO (Schulman et al. 2015), with the minibatch
    scale applied once.

    For a non-reparameterized guide site with downstream cost f (the scaled log-ratio terms
    whose provenance includes it, summed to the site's plates), the surrogate adds
    log q(z) · ⊥(f − b) with the *unscaled* log q, so the score term of a subsampled plate
    is (N/B) Σ_b f_b ∇ log q(z_b) like its pathwise terms. NumPyro's own ``TraceGraph_ELBO``
    multiplies the scaled log q by the scaled cost, which scales the score terms by (N/B)²
    under subsampling (measured: its encoder gradient of a Bernoulli-gated VAE then disagrees
    with the pathwise one by 8 standard errors at N/B = 40/6); Pyro's leaves the score
    function unscaled, as here. This class has no baseline (b = 0); see
    :class:`TraceGraphBaseline_ELBO`.
    """

    can_infer_discrete = True
    neural = False
    """Whether a network baseline is fitted (:class:`TraceGraphBaseline_ELBO` with ``neural``)."""

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
                index = objectives.baseline_index(_baseline_frames(guide_trace, site),
                                                  jnp.ndim(signal))
                baseline = self._baseline(param_map, node, args, signal, index)
                log_q = site["fn"].log_prob(site["value"])  # unscaled: f carries N/B
                surrogate, loss = objectives.score_term(JaxOps, log_q, signal, baseline,
                                                        neural=self.neural)
                elbo = elbo + surrogate - stop_gradient(surrogate)
                baseline_loss = baseline_loss + loss
                signals[node] = (signal, [i for i in index if not isinstance(i, slice)])
                slots[node] = [isinstance(i, slice) for i in index]
            return elbo, baseline_loss, signals

        slots: dict[str, list[bool]] = {}  # static: which table dimensions are whole
        if self.num_particles == 1:  # the key as is, like NumPyro's ELBOs: the same draws
            elbos, baseline_losses, signals = jax.tree.map(lambda v: v[None], particle(rng_key))
        else:
            keys = random.split(rng_key, self.num_particles)
            elbos, baseline_losses, signals = self.vectorize_particles_fn(particle, keys)
        baseline_loss = jnp.mean(baseline_losses)
        loss = -jnp.mean(elbos) + baseline_loss - stop_gradient(baseline_loss)
        return {"loss": loss, "mutable_state": self._new_state(param_map, signals, slots)}

    def _baseline(self, params: dict, node: str, args: tuple, signal: jax.Array,
                  index: tuple) -> Any:
        return 0.0

    def _new_state(self, params: dict, signals: dict, slots: dict) -> dict | None:
        return None


class TraceGraphBaseline_ELBO(TraceGraph_ELBO):
    r""":class:`TraceGraph_ELBO` with baselines (Mnih & Gregor 2014).

    ``b`` is a decaying average, b_n ← β b_n + (1 − β) f̄_n (f̄ the mean over particles),
    kept per datapoint n — indexed by the data plate's subsample, so the average follows the
    datapoint, not its slot in the minibatch — in the ``numpyro.mutable`` sites declared by
    :func:`baseline_guide`; with ``neural=True`` an MLP of the data is added and fitted by
    the baseline loss Σ (⊥f − b)², whose gradient reaches only the network's parameters.
    The returned loss is −ELBO; the new averages come back as the mutable state, so
    ``numpyro.infer.SVI`` carries them from step to step.
    """

    def __init__(self, num_particles: int = 1, beta: float = 0.9, neural: bool = False,
                 hidden: int = 64) -> None:
        super().__init__(num_particles=num_particles)
        self.beta = beta
        self.neural = neural
        self.hidden = hidden

    def _new_state(self, params: dict, signals: dict, slots: dict) -> dict:
        state = {}
        for node, (signal, indices) in signals.items():
            table = params[est.baseline_average_name(node)]
            rows = iter(i[0] for i in indices)  # the same datapoints for every particle
            index = tuple(slice(None) if whole else next(rows) for whole in slots[node])
            new = objectives.decayed_average(self.beta, table[index], jnp.mean(signal, axis=0))
            state[est.baseline_average_name(node)] = table.at[index].set(new.astype(table.dtype))
        return state

    def _baseline(self, params: dict, node: str, args: tuple, signal: jax.Array,
                  index: tuple) -> jax.Array:
        if est.baseline_average_name(node) not in params:
            raise ValueError(f"no baseline state for site {node!r}: pair TraceGraphBaseline_ELBO "
                             "with the guide from ppl_vae.models.numpyro_elbos.baseline_guide "
                             "(make_elbo returns it)")
        baseline = params[est.baseline_average_name(node)][index]
        if self.neural:
            prefix = f"{est.BASELINE_PREFIX}{node}"
            baseline = baseline + networks.apply_baseline(
                JaxOps, params.__getitem__, prefix, self.hidden,
                objectives.baseline_features(JaxOps, args))
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


_PARTICLE_ELBOS: dict[type, type] = {est.AnalyticKL: numpyro.infer.TraceMeanField_ELBO,
                                     est.VIMCO: VIMCO_ELBO, est.IWAE: IWAE_ELBO,
                                     est.STL: TraceSTL_ELBO, est.DReG: DReG_ELBO}
"""Estimator type -> ELBO class for guides whose sites are all reparameterized."""


def make_elbo(estimator: Any, guide: Any, num_particles: int = 1, *,
              example_args: tuple = (), example_kwargs: dict | None = None) -> tuple[Any, Any]:
    """The NumPyro ELBO for ``estimator`` and the guide to pair it with.

    ``example_args`` (e.g. a minibatch) let the guide be traced once to detect
    non-reparameterized sites: ``reparam`` then uses :class:`TraceGraph_ELBO`, and the
    estimators that would be biased there (``reparameterized_only`` ones, and those whose
    library ELBO adds no score term) are refused.
    """
    if isinstance(estimator, est.Score):
        return TraceGraph_ELBO(num_particles=num_particles), score_function(guide)
    if isinstance(estimator, est.ScoreBaseline):
        elbo = TraceGraphBaseline_ELBO(num_particles, beta=estimator.beta,
                                       neural=estimator.neural, hidden=estimator.hidden)
        return elbo, baseline_guide(score_function(guide), estimator)
    discrete = non_reparameterized_sites(guide, *example_args, **(example_kwargs or {}))
    if isinstance(estimator, est.Reparam):
        cls = TraceGraph_ELBO if discrete else numpyro.infer.Trace_ELBO
        return cls(num_particles=num_particles), guide
    if type(estimator) not in _PARTICLE_ELBOS:
        raise TypeError(f"no NumPyro ELBO for estimator {estimator!r}")
    elbo = _PARTICLE_ELBOS[type(estimator)](num_particles=num_particles)
    if discrete and (estimator.reparameterized_only or isinstance(elbo, _PATHWISE_ONLY)):
        raise objectives.reparameterized_only_error(estimator.name, discrete, TypeError)
    return elbo, guide


__all__ = ["DReG_ELBO", "IWAE_ELBO", "KLWeighted_ELBO", "TraceGraphBaseline_ELBO",
           "TraceGraph_ELBO", "TraceSTL_ELBO", "VIMCO_ELBO",
           "baseline_guide", "check_closed_form_kl", "check_elbo", "make_elbo"]
