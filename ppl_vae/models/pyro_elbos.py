"""Pyro ELBOs for the estimators of :mod:`ppl_vae.estimators`.

Pyro ships ``Trace_ELBO``, ``TraceGraph_ELBO``, ``TraceMeanField_ELBO`` and ``RenyiELBO``.
This module adds what it lacks or what means something else there: sticking the landing
(:class:`TraceSTL_ELBO`) and the doubly reparameterized gradient (:class:`DReG_ELBO`) for
fully reparameterized guides; the IWAE bound with the minibatch scale applied after the
log-mean-exp (:class:`IWAE_ELBO`; ``RenyiELBO``'s weights carry the scale, which tempers the
bound under subsampling, and its α = 0 score term vanishes) and VIMCO for discrete sites
(:class:`VIMCO_ELBO`); and baselines kept per datapoint (:class:`TraceGraphBaseline_ELBO`;
``TraceGraph_ELBO``'s decaying average is per batch slot).

References
----------
Roeder, Wu & Duvenaud (2017), Sticking the landing. Tucker, Lawson, Gu & Maddison (2018),
Doubly reparameterized gradient estimators for Monte Carlo objectives. Mnih & Gregor (2014),
Neural variational inference and learning in belief networks. Mnih & Rezende (2016),
Variational inference for Monte Carlo objectives. Burda, Grosse & Salakhutdinov (2016),
Importance weighted autoencoders.
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

from ppl_vae import networks
from ppl_vae.estimators import (
    BASELINE_PREFIX,
    IWAE,
    STL,
    VIMCO,
    AnalyticKL,
    DReG,
    Reparam,
    Score,
    ScoreBaseline,
    baseline_average_name,
)
from ppl_vae.models import objectives
from ppl_vae.models.pyro_backend import TorchOps, drop_stale, score_function


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
    r"""Sticking-the-landing ELBO (Roeder et al. 2017).

    The surrogate is log p(x, z) − log q_{⊥φ}(z | x) with z = g(ε, φ): log q is re-scored
    with the guide's parameters detached (a second guide run under
    ``poutine.replay``), so its gradient flows only through the sample path. The
    dropped term, ∇_φ log q_φ(z), has expectation zero; without it the gradient vanishes
    when q is the exact posterior. Same arguments as ``Trace_ELBO``.
    """

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
    """K particles vectorized in a plate left of ``max_plate_nesting``; the objective
    log (1/K) Σ_k w_k per element of the plates shared by every site (like ``RenyiELBO``),
    with the plate subsampling scale N/B applied *after* the log-mean-exp (unlike Pyro's
    ``RenyiELBO``, whose weights carry the scale). Subclasses give ``_objective``: the bound and
    the surrogate whose gradient is the estimator's.

    Parameters
    ----------
    num_particles : K.
    max_plate_nesting : plates in the model; guessed from one run when left infinite.
    """

    estimator: str

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf")) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=False)

    def _get_trace(self, model: Any, guide: Any, args: tuple, kwargs: dict):
        raise NotImplementedError(f"{type(self).__name__} computes its own vectorized traces")

    def _particles(self, fn: Any) -> Any:
        return pyro.plate("num_particles_vectorized", self.num_particles,
                          dim=-(self.max_plate_nesting + 1))(fn)

    def _guide_trace(self, model: Any, guide: Any, args: tuple, kwargs: dict) -> poutine.Trace:
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        return poutine.trace(self._particles(guide)).get_trace(*args, **kwargs)

    def _replayed(self, fn: Any, trace: poutine.Trace, args: tuple,
                  kwargs: dict) -> poutine.Trace:
        replayed = poutine.trace(poutine.replay(self._particles(fn), trace=trace))
        return prune_subsample_sites(replayed.get_trace(*args, **kwargs))

    def _log_weights(self, model_trace: poutine.Trace, guide_trace: poutine.Trace
                     ) -> tuple[torch.Tensor, float, torch.Tensor]:
        """(log w, the common scale, Σ log q of the non-reparameterized guide sites), the
        first and last per element of the shared plates (particle plate included)."""
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting + 1)
        sites = [(sign, site) for sign, tr in ((1.0, model_trace), (-1.0, guide_trace))
                 for site in tr.nodes.values() if site["type"] == "sample"]
        shared = set.intersection(*({f for f in site["cond_indep_stack"] if f.vectorized}
                                    for _, site in sites))
        keep = {f.dim for f in shared}
        ndim = self.max_plate_nesting + 1

        def log_prob(site: dict) -> torch.Tensor:
            log_p = scale_and_mask(site["fn"].log_prob(site["value"]), 1.0, site["mask"])
            return log_p.reshape((1,) * (ndim - log_p.dim()) + tuple(log_p.shape))

        log_w = objectives.shared_plate_log_weight(
            TorchOps, [(sign, log_prob(site)) for sign, site in sites], keep)
        log_q_score = torch.zeros_like(log_w) + objectives.shared_plate_log_weight(
            TorchOps, [(1.0, log_prob(site)) for sign, site in sites
                       if sign < 0 and not site["fn"].has_rsample], keep)
        return (log_w, objectives.common_scale(site["scale"] for _, site in sites),
                log_q_score)

    def loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        """−bound (a float)."""
        with torch.no_grad():
            return -self._objective(model, guide, args, kwargs)[0].item()

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any):
        """−bound, with the estimator's gradient."""
        bound, surrogate = self._objective(model, guide, args, kwargs)
        return -(bound.detach() + surrogate - surrogate.detach())

    def loss_and_grads(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


class IWAE_ELBO(_ParticleELBO):
    r"""The importance-weighted bound (Burda et al. 2016) and its plain gradient,
    Σ_k w̃_k ∇ log w_k through every sample path, scaled by N/B after the log-mean-exp.

    Refuses guides with non-reparameterized sites: the plain gradient has no score term for
    them (their parameters would get no gradient); use :class:`VIMCO_ELBO`.
    """

    estimator = "iwae"

    def _objective(self, model: Any, guide: Any, args: tuple,
                   kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        guide_trace = self._guide_trace(model, guide, args, kwargs)
        self._check_sites(guide_trace)
        model_trace = self._replayed(model, guide_trace, args, kwargs)
        log_w, scale, log_q_score = self._log_weights(model_trace,
                                                      prune_subsample_sites(guide_trace))
        log_mean, _ = objectives.normalized_weights(TorchOps, log_w, self.num_particles)
        bound = scale * log_mean.sum()
        return bound, bound + scale * self._score_term(log_w, log_q_score)

    def _check_sites(self, guide_trace: poutine.Trace) -> None:
        _require_reparameterized(guide_trace, self.estimator)

    def _score_term(self, log_w: torch.Tensor, log_q_score: Any) -> Any:
        return 0.0


class VIMCO_ELBO(IWAE_ELBO):
    r"""The importance-weighted bound with VIMCO's gradient (Mnih & Rezende 2016): the IWAE
    gradient through reparameterized sites plus, for non-reparameterized ones (Bernoulli
    gates), the score term Σ_k L̂(k | −k) ∇ log q(z_k) with leave-one-out signals
    (:func:`ppl_vae.models.objectives.leave_one_out_signals`). Needs K ≥ 2. On a fully
    reparameterized guide it is :class:`IWAE_ELBO`.
    """

    estimator = "vimco"

    def _check_sites(self, guide_trace: poutine.Trace) -> None:
        """Every site is welcome: the non-reparameterized ones get the score term."""

    def _score_term(self, log_w: torch.Tensor, log_q_score: Any) -> Any:
        signals = objectives.leave_one_out_signals(TorchOps, log_w, self.num_particles)
        return (signals * log_q_score).sum()


class DReG_ELBO(_ParticleELBO):
    r"""Importance-weighted bound with the doubly reparameterized gradient (Tucker et al. 2018).

    With log w_k = log p(x, z_k) − log q(z_k | x), z_k = g(ε_k, φ), and normalized weights
    w̃_k = w_k / Σ_j w_j, the objective log (1/K) Σ_k w_k gets the gradients

    .. math:: ∇_θ = Σ_k w̃_k ∇_θ \log w_k,\qquad
              ∇_φ = Σ_k w̃_k^2 \frac{∂ \log w_k}{∂ z_k} \frac{∂ z_k}{∂ φ},

    where log q is re-scored with the guide's parameters detached. One backward pass: the
    surrogate Σ_k w̃_k log w_k is differentiated with a hook on each sample value z_k that
    multiplies the path gradient by w̃_k. At K = 1 this is :class:`TraceSTL_ELBO`.
    """

    estimator = "dreg"

    def _objective(self, model: Any, guide: Any, args: tuple,
                   kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(IWAE bound, surrogate) summed over the shared plates and scaled."""
        guide_trace = self._guide_trace(model, guide, args, kwargs)
        _require_reparameterized(guide_trace, self.estimator)
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
        log_mean, weights["w"] = objectives.normalized_weights(TorchOps, log_w,
                                                               self.num_particles)
        surrogate = (weights["w"] * log_w).sum(0)
        return scale * log_mean.sum(), scale * surrogate.sum()


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
    provenance includes the site), the surrogate adds log q(z) · ⊥(f − b). The baseline b is a
    table of decaying averages b_n ← β b_n + (1 − β) f̄_n (f̄ the mean over particles), one
    entry per element of the site's plates, where a subsampled plate contributes its full
    size and is indexed by the minibatch's datapoint indices: each datapoint keeps its own
    average whatever the shuffle. The table is the parameter
    ``baseline.<site>.average`` (read and updated without gradient). With ``neural=True`` an
    MLP of the data (the guide's first argument; :func:`ppl_vae.networks.init_baseline`, names
    ``baseline.<site>.*``) is added and fitted by the baseline loss Σ (⊥f − b)².
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
            self._features = _features(args)
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
            baseline = self._baseline(node, site, signal)
            surrogate = surrogate + (site["score_parts"].score_function
                                     * (signal - baseline).detach()).sum()
            if self.neural:
                baseline_loss = baseline_loss + ((signal - baseline) ** 2).sum()
        return detach_provenance(elbo), detach_provenance(-surrogate + baseline_loss)

    def _baseline(self, node: str, site: dict, signal: torch.Tensor) -> torch.Tensor:
        """The site's baseline for this minibatch; updates its averages with ``signal``."""
        frames = [f for f in site["cond_indep_stack"] if f.name != "num_particles_vectorized"]
        particle_dims = [f.dim for f in site["cond_indep_stack"]
                         if f.name == "num_particles_vectorized"]
        table_shape = [1] * -min([f.dim for f in frames], default=0)
        for f in frames:
            table_shape[f.dim] = f.full_size or f.size
        table = pyro.param(baseline_average_name(node),
                           lambda: torch.zeros(table_shape, dtype=signal.dtype,
                                               device=signal.device))
        index = self._index(frames, table.dim())
        with torch.no_grad():
            average = table[index]
            mean = signal.mean(dim=particle_dims, keepdim=True) if particle_dims else signal
            table[index] = self.beta * average + (1 - self.beta) * mean.reshape(average.shape)
        baseline = average.detach()
        if self.neural:
            prefix = f"{BASELINE_PREFIX}{node}"
            baseline = baseline + networks.apply_baseline(
                TorchOps, self._network(prefix), prefix, self.hidden, self._features)
        return baseline

    def _index(self, frames: list, ndim: int) -> tuple:
        index: list[Any] = [slice(None)] * ndim
        subsampled = [f for f in frames if f.name in self._indices
                      and (f.full_size or f.size) != f.size]
        if len(subsampled) > 1:
            raise ValueError("score-baseline keeps one average per datapoint of one subsampled "
                             f"plate; this site is in several: {[f.name for f in subsampled]}")
        for f in subsampled:
            index[f.dim] = self._indices[f.name]
        return tuple(index)

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


def _features(args: tuple) -> torch.Tensor:
    if not args or not torch.is_tensor(args[0]):
        raise ValueError("the neural baseline reads the guide's first positional argument "
                         "(the data batch); call the guide as guide(x, ...)")
    x = args[0].detach()
    return x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(1, -1)


def check_closed_form_kl(model: Any, guide: Any, *args: Any, **kwargs: Any) -> None:
    """Raise ``ValueError`` unless every latent site has a closed-form KL(q ‖ p)."""
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs)
    objectives.check_closed_form_kl(
        ((name, site["fn"], model_trace.nodes[name]["fn"]) for name, site
         in _latent_sites(guide_trace)), TorchOps.kl_divergence)


def make_elbo(estimator: Any, guide: Any, num_particles: int = 1, *,
              max_plate_nesting: float = 1) -> tuple[Any, Any]:
    """The Pyro ELBO for ``estimator`` and the guide to pair it with.

    ``max_plate_nesting`` defaults to 1 (the VAEs' data plate); pass ``float("inf")`` for
    other programs to let Pyro guess it from one run.
    """
    common = {"num_particles": num_particles, "vectorize_particles": True,
              "max_plate_nesting": max_plate_nesting}
    if isinstance(estimator, Reparam):
        return pyro.infer.Trace_ELBO(**common), guide
    if isinstance(estimator, AnalyticKL):
        return pyro.infer.TraceMeanField_ELBO(**common), guide
    if isinstance(estimator, Score):
        return pyro.infer.Trace_ELBO(**common), score_function(guide)
    if isinstance(estimator, ScoreBaseline):
        return TraceGraphBaseline_ELBO(beta=estimator.beta, neural=estimator.neural,
                                       hidden=estimator.hidden, **common), score_function(guide)
    if isinstance(estimator, VIMCO):
        return VIMCO_ELBO(num_particles, max_plate_nesting=max_plate_nesting), guide
    if isinstance(estimator, IWAE):
        return IWAE_ELBO(num_particles, max_plate_nesting=max_plate_nesting), guide
    if isinstance(estimator, STL):
        return TraceSTL_ELBO(**common), guide
    if isinstance(estimator, DReG):
        return DReG_ELBO(num_particles, max_plate_nesting=max_plate_nesting), guide
    raise TypeError(f"no Pyro ELBO for estimator {estimator!r}")
