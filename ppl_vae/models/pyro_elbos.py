"""Pyro ELBOs for the estimators of :mod:`ppl_vae.estimators`: trace flattening and the
registry; the math is :mod:`ppl_vae.models.objectives`.

Pyro ships ``Trace_ELBO``, ``TraceGraph_ELBO``, ``TraceMeanField_ELBO`` and ``RenyiELBO``.
This module adds what it lacks or what means something else there: sticking the landing
(:class:`TraceSTL_ELBO`) and the doubly reparameterized gradient (:class:`DReG_ELBO`); the IWAE
bound with the minibatch scale applied after the log-mean-exp (:class:`IWAE_ELBO`;
``RenyiELBO``'s weights carry the scale, which tempers the bound under subsampling, and its
α = 0 score term vanishes) and VIMCO for discrete sites (:class:`VIMCO_ELBO`); and baselines kept
per datapoint (:class:`TraceGraphBaseline_ELBO`; ``TraceGraph_ELBO``'s decaying average is per
batch slot); and the ELBO with a weighted (β, warm-up) or floored (free bits) KL term
(:class:`KLWeighted_ELBO`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pyro
import pyro.infer
import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer.util import MultiFrameTensor, is_validation_enabled
from pyro.ops.provenance import detach_provenance, get_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match

from ppl_vae import estimators as est
from ppl_vae import networks
from ppl_vae.models import objectives
from ppl_vae.models.pyro_backend import TorchOps, drop_stale, score_function

_PARTICLES = "num_particles_vectorized"


class _DetachParams(Messenger):
    """Return every ``pyro.param`` value detached: the program's distributions are then
    rebuilt with stop-gradient on their parameters, while sample values keep their paths."""

    def _pyro_post_param(self, msg: dict) -> None:
        msg["value"] = msg["value"].detach()


def _latent_sites(trace: poutine.Trace) -> list[tuple[str, dict]]:
    return [(name, site) for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
            and not isinstance(site["fn"], _Subsample)]


def _require_reparameterized(trace: poutine.Trace, estimator: str) -> None:
    objectives.require_reparameterized(((name, site["fn"]) for name, site
                                        in _latent_sites(trace)), estimator)


class TraceSTL_ELBO(pyro.infer.Trace_ELBO):
    r"""Sticking-the-landing ELBO (Roeder et al. 2017): log p(x, z) − log q_{⊥φ}(z | x) with
    z = g(ε, φ); log q is re-scored with the guide's parameters detached (a second guide run
    under ``poutine.replay``), so its gradient flows only through the sample path. Same
    arguments as ``Trace_ELBO``."""

    def _get_trace(self, model: Any, guide: Any, args: tuple, kwargs: dict):
        model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        _require_reparameterized(guide_trace, "stl")
        frozen = poutine.trace(poutine.replay(_DetachParams()(guide), trace=guide_trace))
        frozen_trace = prune_subsample_sites(frozen.get_trace(*args, **kwargs))
        frozen_trace.compute_score_parts()
        for name, _ in _latent_sites(guide_trace):
            guide_trace.nodes[name]["score_parts"] = frozen_trace.nodes[name]["score_parts"]
        return model_trace, guide_trace


class _ParticleELBO(pyro.infer.ELBO):
    """K particles vectorized in a plate left of ``max_plate_nesting``, the traces flattened
    for :func:`ppl_vae.models.objectives.log_weights`. Subclasses give ``_objective``: the
    bound and the surrogate whose gradient is the estimator's.

    Parameters
    ----------
    num_particles : K.
    max_plate_nesting : plates in the model; guessed from one run when left infinite.
    """

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf")) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=False)

    def _particles(self, fn: Any) -> Any:
        return pyro.plate(_PARTICLES, self.num_particles, dim=-(self.max_plate_nesting + 1))(fn)

    def _guide_trace(self, model: Any, guide: Any, args: tuple, kwargs: dict) -> poutine.Trace:
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        return poutine.trace(self._particles(guide)).get_trace(*args, **kwargs)

    def _replayed(self, fn: Any, trace: poutine.Trace, args: tuple,
                  kwargs: dict) -> poutine.Trace:
        replayed = poutine.trace(poutine.replay(self._particles(fn), trace=trace))
        return prune_subsample_sites(replayed.get_trace(*args, **kwargs))

    def _get_trace(self, model: Any, guide: Any, args: tuple, kwargs: dict):
        """The model and guide traces of the K vectorized particles (Pyro's ELBO interface)."""
        guide_trace = self._guide_trace(model, guide, args, kwargs)
        return self._replayed(model, guide_trace, args, kwargs), guide_trace

    def _log_weights(self, model_trace: poutine.Trace, guide_trace: poutine.Trace
                     ) -> tuple[torch.Tensor, float, torch.Tensor]:
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting + 1)
        ndim = self.max_plate_nesting + 1

        def flat(sign: float, site: dict) -> objectives.WeightedSite:
            log_p = scale_and_mask(site["fn"].log_prob(site["value"]), 1.0, site["mask"])
            log_p = log_p.reshape((1,) * (ndim - log_p.dim()) + tuple(log_p.shape))
            return objectives.WeightedSite(
                sign, log_p, frozenset(f.dim for f in site["cond_indep_stack"] if f.vectorized),
                site["scale"], site["fn"].has_rsample)

        return objectives.log_weights(TorchOps, [
            flat(sign, site) for sign, tr in ((1.0, model_trace), (-1.0, guide_trace))
            for site in tr.nodes.values() if site["type"] == "sample"])

    def loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        """−bound (a float)."""
        with torch.no_grad():
            return -self._objective(model, guide, args, kwargs)[0].item()

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any):
        """−bound, with the estimator's gradient."""
        return objectives.surrogate_loss(*self._objective(model, guide, args, kwargs),
                                         TorchOps.stop_gradient)

    def loss_and_grads(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


class IWAE_ELBO(_ParticleELBO):
    r"""The importance-weighted bound (Burda et al. 2016) with its plain gradient
    (:func:`~ppl_vae.models.objectives.importance_weighted`). Refuses guides with
    non-reparameterized sites (their parameters would get no gradient): use
    :class:`VIMCO_ELBO`."""

    vimco = False

    def _objective(self, model: Any, guide: Any, args: tuple,
                   kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        if not self.vimco:
            _require_reparameterized(guide_trace, "iwae")
        log_w, scale, log_q_score = self._log_weights(model_trace,
                                                      prune_subsample_sites(guide_trace))
        return objectives.importance_weighted(TorchOps, log_w, log_q_score, self.num_particles,
                                              scale, vimco=self.vimco)


class VIMCO_ELBO(IWAE_ELBO):
    r"""The importance-weighted bound with VIMCO's gradient (Mnih & Rezende 2016): leave-one-out
    score terms for the non-reparameterized sites. Needs K ≥ 2; on a fully reparameterized
    guide it is :class:`IWAE_ELBO`."""

    vimco = True


class DReG_ELBO(_ParticleELBO):
    r"""Importance-weighted bound with the doubly reparameterized gradient (Tucker et al. 2018;
    :func:`~ppl_vae.models.objectives.doubly_reparameterized`). One backward pass: a hook on
    each sample value z_k multiplies its path gradient by w̃_k, known after the forward pass.
    At K = 1 this is :class:`TraceSTL_ELBO`."""

    def _objective(self, model: Any, guide: Any, args: tuple,
                   kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        guide_trace = self._guide_trace(model, guide, args, kwargs)
        _require_reparameterized(guide_trace, "dreg")
        weights: dict[str, torch.Tensor] = {}
        scaled = poutine.Trace()
        for name, site in guide_trace.nodes.items():
            scaled.add_node(name, **site)
        for name, site in _latent_sites(guide_trace):
            value = site["value"].clone()
            event_dim = site["fn"].event_dim
            if value.requires_grad:  # w̃ is known after the forward pass, read in backward
                value.register_hook(lambda g, e=event_dim: g * weights["w"].reshape(
                    weights["w"].shape + (1,) * e))
            scaled.nodes[name] = {**site, "value": value}
        model_trace = self._replayed(model, scaled, args, kwargs)
        frozen_trace = self._replayed(_DetachParams()(guide), scaled, args, kwargs)
        log_w, scale, _ = self._log_weights(model_trace, frozen_trace)

        def path_log_w(w: torch.Tensor) -> torch.Tensor:
            weights["w"] = w
            return log_w

        return objectives.doubly_reparameterized(TorchOps, log_w, self.num_particles, scale,
                                                 path_log_w)


class KLWeighted_ELBO(_ParticleELBO):
    r"""The ELBO with a weighted KL term (β-VAE, KL warm-up) and free bits:
    E_q[log p(x | z)] − w · Σ_j max(λ, KL̄_j) (:func:`~ppl_vae.models.objectives.kl_weighted_loss`),
    the same objective as the NumPyro backend's ``KLWeighted_ELBO``.

    Each call (``loss``, ``differentiable_loss``, ``loss_and_grads``, so ``SVI.step``) takes
    the keyword ``kl_weight`` (w, default 1.0: β, or the warm-up's β_t of this step), removed
    before the model and guide run. The KL is closed-form with ``analytic`` (the library's
    ``kl_divergence``; per dimension, that of the ``Independent`` site's base distributions),
    else log q(z | x) − log p(z) at the draw. With ``free_bits`` λ > 0 the KL of every latent
    dimension (of every site), averaged over the minibatch and the particles, is floored at
    λ nats (Kingma et al. 2016); the sites must then factorize over dimensions. Every guide
    site must be reparameterized. K = ``num_particles`` draws are vectorized in a plate.
    """

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf"), *,
                 analytic: bool = False, free_bits: float = 0.0) -> None:
        super().__init__(num_particles, max_plate_nesting)
        self.analytic = analytic
        self.free_bits = objectives.check_free_bits(free_bits)

    def _objective(self, model: Any, guide: Any, args: tuple,
                   kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = dict(kwargs)
        kl_weight = kwargs.pop("kl_weight", 1.0)
        objectives.check_kl_weight(kl_weight)
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        guide_trace = prune_subsample_sites(guide_trace)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting + 1)
        bad = [name for name, site in _latent_sites(guide_trace) if not site["fn"].has_rsample]
        if bad:
            raise objectives.kl_options_non_reparameterized_error(bad)
        log_likelihood, kl_terms = 0.0, []
        sites = [site for tr in (model_trace, guide_trace) for site in tr.nodes.values()
                 if site["type"] == "sample" and not site["infer"].get("_deterministic")]
        for site in sites:
            if site["mask"] is not None:
                raise ValueError(f"site {site['name']!r} is masked; the KL-weighted ELBO "
                                 "supports no masks")
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site["infer"].get("_deterministic"):
                continue
            if site["is_observed"]:
                log_likelihood = log_likelihood + site["fn"].log_prob(site["value"])
            else:
                kl_terms.append(objectives.site_kl(
                    TorchOps, name, guide_trace.nodes[name]["fn"], site["fn"], site["value"],
                    analytic=self.analytic, per_dimension=self.free_bits > 0))
        loss = objectives.kl_weighted_loss(TorchOps, log_likelihood, kl_terms,
                                           objectives.common_scale(s["scale"] for s in sites),
                                           kl_weight, self.free_bits)
        return -loss, -loss


class _SubsampleIndices(Messenger):
    """Record the subsample indices of every plate the program enters, by plate name."""

    def __init__(self) -> None:
        super().__init__()
        self.indices: dict[str, torch.Tensor] = {}

    def _pyro_post_sample(self, msg: dict) -> None:
        if isinstance(msg["fn"], _Subsample):
            self.indices[msg["name"]] = msg["value"]


class TraceGraphBaseline_ELBO(pyro.infer.TraceGraph_ELBO):
    r"""``TraceGraph_ELBO`` with baselines kept per datapoint (Mnih & Gregor 2014; Schulman
    et al. 2015), the same estimator as the NumPyro backend's ``TraceGraphBaseline_ELBO``.

    For a non-reparameterized guide site with downstream cost f (the log-ratio terms whose
    provenance includes the site), the surrogate adds log q(z) · ⊥(f − b)
    (:func:`~ppl_vae.models.objectives.score_term`). The baseline b is a table of decaying
    averages, one entry per element of the site's plates, a subsampled plate indexed by the
    minibatch's datapoint indices; the table is the parameter ``baseline.<site>.average`` (read
    and updated without gradient). With ``neural=True`` an MLP of the data
    (:func:`ppl_vae.networks.init_baseline`, names ``baseline.<site>.*``) is added and fitted by
    the baseline loss Σ (⊥f − b)².
    """

    def __init__(self, num_particles: int = 1, beta: float = 0.9, neural: bool = False,
                 hidden: int = 64, **kwargs: Any) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        self.beta, self.neural, self.hidden = beta, neural, hidden
        self.networks: dict[str, torch.Tensor] = {}
        self._indices: dict[str, torch.Tensor] = {}
        self._features: torch.Tensor | None = None

    def _get_trace(self, model: Any, guide: Any, args: tuple, kwargs: dict):
        recorder = _SubsampleIndices()
        traces = super()._get_trace(model, recorder(guide), args, kwargs)
        self._indices = recorder.indices
        if self.neural:
            self._features = objectives.baseline_features(TorchOps, args)
        return traces

    def _loss_and_surrogate_loss_particle(self, model_trace: poutine.Trace,
                                          guide_trace: poutine.Trace):
        elbo = surrogate = baseline_loss = 0.0
        costs: dict[str, MultiFrameTensor] = defaultdict(MultiFrameTensor)
        for sign, tr in ((1.0, model_trace), (-1.0, guide_trace)):
            for site in tr.nodes.values():
                if site["type"] != "sample":
                    continue
                elbo = elbo + sign * site["log_prob_sum"]
                if sign > 0:
                    surrogate = surrogate + site["log_prob_sum"]
                elif not is_identically_zero(site["score_parts"].entropy_term):
                    surrogate = surrogate - site["score_parts"].entropy_term.sum()
                for node in get_provenance(site["log_prob_sum"]):
                    costs[node].add((site["cond_indep_stack"], sign * site["log_prob"]))
        for node, cost in costs.items():
            site = guide_trace.nodes[node]
            signal = detach_provenance(cost.sum_to(site["cond_indep_stack"])).detach()
            term, loss = objectives.score_term(TorchOps, site["score_parts"].score_function,
                                               signal, self._baseline(node, site, signal),
                                               neural=self.neural)
            surrogate, baseline_loss = surrogate + term, baseline_loss + loss
        return detach_provenance(elbo), detach_provenance(-surrogate + baseline_loss)

    def _baseline(self, node: str, site: dict, signal: torch.Tensor) -> torch.Tensor:
        """The site's baseline for this minibatch; updates its averages with ``signal``."""
        stack = site["cond_indep_stack"]
        frames = [objectives.BaselineFrame(
            f.name, f.dim, f.full_size or f.size,
            self._indices.get(f.name) if (f.full_size or f.size) != f.size else None)
            for f in stack if f.name != _PARTICLES]
        particle_dims = [f.dim for f in stack if f.name == _PARTICLES]
        table = pyro.param(est.baseline_average_name(node),
                           lambda: torch.zeros(objectives.baseline_table_shape(frames),
                                               dtype=signal.dtype, device=signal.device))
        index = objectives.baseline_index(frames, table.dim())
        with torch.no_grad():
            average = table[index]
            mean = signal.mean(dim=particle_dims, keepdim=True) if particle_dims else signal
            table[index] = objectives.decayed_average(self.beta, average,
                                                      mean.reshape(average.shape))
        baseline = average.detach()
        if self.neural:
            prefix = f"{est.BASELINE_PREFIX}{node}"
            baseline = baseline + networks.apply_baseline(
                TorchOps, self._network(prefix), prefix, self.hidden, self._features)
        return baseline

    def load_networks(self, values: dict[str, torch.Tensor]) -> None:
        """Use these values for the neural baseline's parameters (resuming a checkpoint)."""
        self.networks.update({name: torch.nn.Parameter(value.detach().clone())
                              for name, value in values.items()})

    def _network(self, prefix: str) -> Any:
        features = self._features
        if f"{prefix}.0.weight" not in self.networks:
            for name, value in networks.init_baseline(prefix, features.shape[-1],
                                                      self.hidden).items():
                self.networks[name] = torch.nn.Parameter(torch.as_tensor(
                    value, dtype=features.dtype, device=features.device))

        def param(name: str) -> torch.Tensor:
            value = self.networks[name]
            drop_stale(name, value)
            return pyro.param(name, value)

        return param


def check_closed_form_kl(model: Any, guide: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``ValueError`` unless every latent site has a closed-form KL(q ‖ p)."""
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs)
    objectives.check_closed_form_kl(
        ((name, site["fn"], model_trace.nodes[name]["fn"]) for name, site
         in _latent_sites(guide_trace)), TorchOps.kl_divergence)


_REGISTRY: dict[type, Any] = {
    est.Reparam: lambda e, guide, common: (pyro.infer.Trace_ELBO(**common), guide),
    est.AnalyticKL: lambda e, guide, common: (pyro.infer.TraceMeanField_ELBO(**common), guide),
    est.Score: lambda e, guide, common: (pyro.infer.Trace_ELBO(**common), score_function(guide)),
    est.ScoreBaseline: lambda e, guide, common: (
        TraceGraphBaseline_ELBO(beta=e.beta, neural=e.neural, hidden=e.hidden, **common),
        score_function(guide)),
    est.STL: lambda e, guide, common: (TraceSTL_ELBO(**common), guide),
}
"""Estimator type -> (ELBO, guide) from the library's ELBOs or this module's
(``common``: their keyword arguments)."""
_PARTICLE_ELBOS: dict[type, type] = {est.IWAE: IWAE_ELBO, est.VIMCO: VIMCO_ELBO,
                                     est.DReG: DReG_ELBO}
"""Estimator type -> this module's vectorized-particle ELBO."""


def make_elbo(estimator: Any, guide: Any, num_particles: int = 1, *,
              max_plate_nesting: float = 1) -> tuple[Any, Any]:
    """The Pyro ELBO for ``estimator`` and the guide to pair it with.

    ``max_plate_nesting`` defaults to 1 (the VAEs' data plate); pass ``float("inf")`` for
    other programs to let Pyro guess it from one run.
    """
    if type(estimator) in _PARTICLE_ELBOS:
        return (_PARTICLE_ELBOS[type(estimator)](num_particles,
                                                  max_plate_nesting=max_plate_nesting), guide)
    if type(estimator) not in _REGISTRY:
        raise TypeError(f"no Pyro ELBO for estimator {estimator!r}")
    common = {"num_particles": num_particles, "vectorize_particles": True,
              "max_plate_nesting": max_plate_nesting}
    return _REGISTRY[type(estimator)](estimator, guide, common)
