"""Pyro ELBOs for the estimators of :mod:`ppl_vae.estimators`.

Pyro ships ``Trace_ELBO``, ``TraceGraph_ELBO`` (with baselines), ``TraceMeanField_ELBO`` and
``RenyiELBO``. Sticking the landing and the doubly reparameterized IWAE gradient are not in
Pyro; :class:`TraceSTL_ELBO` and :class:`DReG_ELBO` add them for any model/guide pair whose
guide is fully reparameterized.

References
----------
Roeder, Wu & Duvenaud (2017), Sticking the landing. Tucker, Lawson, Gu & Maddison (2018),
Doubly reparameterized gradient estimators for Monte Carlo objectives. Mnih & Gregor (2014),
Neural variational inference and learning in belief networks.
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.infer
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match

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
from ppl_vae.models.pyro_backend import TorchOps, drop_stale, score_function

DECAYING_AVERAGE_PREFIX = "__baseline_avg_downstream_cost_"
"""Where Pyro's ``TraceGraph_ELBO`` keeps a site's decaying-average baseline (param store)."""


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


class DReG_ELBO(pyro.infer.ELBO):
    r"""Importance-weighted bound with the doubly reparameterized gradient (Tucker et al. 2018).

    With log w_k = log p(x, z_k) − log q(z_k | x), z_k = g(ε_k, φ), and normalized weights
    w̃_k = w_k / Σ_j w_j, the objective log (1/K) Σ_k w_k (per element of the plates shared by
    every site, like ``RenyiELBO``) gets the gradients

    .. math:: ∇_θ = Σ_k w̃_k ∇_θ \log w_k,\qquad
              ∇_φ = Σ_k w̃_k^2 \frac{∂ \log w_k}{∂ z_k} \frac{∂ z_k}{∂ φ},

    where log q is re-scored with the guide's parameters detached. One backward pass: the
    surrogate Σ_k w̃_k log w_k is differentiated with a hook on each sample value z_k that
    multiplies the path gradient by w̃_k. Plate subsampling scales are applied after the
    log-mean-exp. At K = 1 this is :class:`TraceSTL_ELBO`.

    Parameters
    ----------
    num_particles : K, vectorized in a plate left of ``max_plate_nesting``.
    max_plate_nesting : plates in the model; guessed from one run when left infinite.
    """

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf")) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=False)

    def _get_trace(self, model: Any, guide: Any, args: tuple, kwargs: dict):
        raise NotImplementedError("DReG_ELBO computes its own vectorized traces")

    def _particles(self, fn: Any) -> Any:
        return pyro.plate("num_particles_vectorized", self.num_particles,
                          dim=-(self.max_plate_nesting + 1))(fn)

    def _objective(self, model: Any, guide: Any, args: tuple,
                   kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(IWAE bound, surrogate) summed over the shared plates and scaled."""
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        guide_trace = poutine.trace(self._particles(guide)).get_trace(*args, **kwargs)
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
        model_trace = poutine.trace(poutine.replay(self._particles(model), trace=scaled))
        model_trace = prune_subsample_sites(model_trace.get_trace(*args, **kwargs))
        frozen = poutine.trace(poutine.replay(self._particles(_DetachParams()(guide)),
                                              trace=scaled))
        frozen_trace = prune_subsample_sites(frozen.get_trace(*args, **kwargs))
        if is_validation_enabled():
            check_model_guide_match(model_trace, frozen_trace,
                                    self.max_plate_nesting + 1)
        log_w, scale = self._log_weights(model_trace, frozen_trace)
        log_mean, weights["w"] = objectives.normalized_weights(TorchOps, log_w,
                                                               self.num_particles)
        surrogate = (weights["w"] * log_w).sum(0)
        return scale * log_mean.sum(), scale * surrogate.sum()

    def _log_weights(self, model_trace: poutine.Trace,
                     guide_trace: poutine.Trace) -> tuple[torch.Tensor, float]:
        sites = [(sign, site) for sign, tr in ((1.0, model_trace), (-1.0, guide_trace))
                 for site in tr.nodes.values() if site["type"] == "sample"]
        shared = set.intersection(*({f for f in site["cond_indep_stack"] if f.vectorized}
                                    for _, site in sites))
        keep = {f.dim for f in shared}  # includes the particle plate
        ndim = self.max_plate_nesting + 1
        log_ps = []
        for sign, site in sites:
            log_p = scale_and_mask(site["fn"].log_prob(site["value"]), 1.0, site["mask"])
            log_ps.append((sign, log_p.reshape((1,) * (ndim - log_p.dim()) + tuple(log_p.shape))))
        return (objectives.shared_plate_log_weight(TorchOps, log_ps, keep),
                objectives.common_scale(site["scale"] for _, site in sites))

    def loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        """−IWAE bound (a float)."""
        with torch.no_grad():
            return -self._objective(model, guide, args, kwargs)[0].item()

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any):
        """−IWAE bound, with the DReG gradient."""
        bound, surrogate = self._objective(model, guide, args, kwargs)
        return -(bound.detach() + surrogate - surrogate.detach())

    def loss_and_grads(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


def _with_baseline(guide: Any, beta: float) -> Any:
    baseline = {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": beta}}
    return poutine.infer_config(
        guide, lambda msg: baseline if msg["type"] == "sample" and not msg["is_observed"] else {})


class NeuralBaselineGuide:
    r"""A guide whose non-reparameterized sites carry a decaying-average baseline plus a
    learned one, b(x) = avg + MLP(x) (Mnih & Gregor 2014), for ``TraceGraph_ELBO``.

    The network input is the guide's first positional argument (the minibatch, one row per
    datapoint, flattened); its output is one baseline per datapoint. The network is
    :func:`ppl_vae.networks.init_baseline`'s, created on first sight of a site; this guide owns
    its tensors (``params``) and registers them as ``baseline.<site>.*`` parameters (the
    NumPyro backend's names), which ``TraceGraph_ELBO``'s baseline loss Σ (f − b)² trains
    through its ``baseline_value`` option.
    """

    def __init__(self, guide: Any, beta: float, hidden: int) -> None:
        self.guide, self.beta, self.hidden = guide, beta, hidden
        self.params: dict[str, torch.Tensor] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args or not torch.is_tensor(args[0]):
            raise ValueError("the neural baseline reads the guide's first positional argument "
                             "(the data batch); call the guide as guide(x, ...)")
        x = args[0].detach()
        features = x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(1, -1)

        def config(msg: dict) -> dict:
            if (msg["type"] != "sample" or msg["is_observed"]
                    or isinstance(msg["fn"], _Subsample) or msg["fn"].has_rsample):
                return {}
            prefix = f"{BASELINE_PREFIX}{msg['name']}"
            value = networks.apply_baseline(TorchOps, self._param(prefix, features), prefix,
                                            self.hidden, features)
            return {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": self.beta,
                                 "baseline_value": value}}

        return poutine.infer_config(self.guide, config)(*args, **kwargs)

    def _param(self, prefix: str, features: torch.Tensor) -> Any:
        if f"{prefix}.0.weight" not in self.params:
            for name, value in networks.init_baseline(prefix, features.shape[-1],
                                                      self.hidden).items():
                self.params[name] = torch.nn.Parameter(torch.as_tensor(
                    value, dtype=features.dtype, device=features.device))

        def param(name: str) -> torch.Tensor:
            value = self.params[name]
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
        elbo = pyro.infer.TraceGraph_ELBO(**common)
        if estimator.neural:
            return elbo, NeuralBaselineGuide(score_function(guide), estimator.beta,
                                             estimator.hidden)
        return elbo, _with_baseline(score_function(guide), estimator.beta)
    if isinstance(estimator, IWAE):
        return pyro.infer.RenyiELBO(alpha=0.0, **common), guide
    if isinstance(estimator, STL):
        return TraceSTL_ELBO(**common), guide
    if isinstance(estimator, DReG):
        return DReG_ELBO(num_particles, max_plate_nesting=max_plate_nesting), guide
    raise TypeError(f"no Pyro ELBO for estimator {estimator!r}")
