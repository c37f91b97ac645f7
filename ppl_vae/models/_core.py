"""What a VAE computes, independent of the backend.

:class:`VAECore` turns a spec and a parameter getter into the distributions of the model
and the guide. The backends subclass it and add only what differs: parameter storage,
the ``model`` / ``guide`` sample statements, random numbers, devices, and how a function runs
without gradients (:meth:`VAECore.compute`, :meth:`VAECore.inference`) — so the evaluation and
diagnostics code above them never asks which backend it has.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, ClassVar

import numpy as np

from ppl_vae.families import class_prior_params, class_rows
from ppl_vae.models.conditioning import check_labels, require_labels_iff_conditioned
from ppl_vae.networks import (
    apply_decoder,
    apply_encoder,
    init_decoder,
    init_encoder,
    local_autoregressive,
)
from ppl_vae.spec import ModelSpec


class DeviceError(RuntimeError):
    """A device was asked for that this machine (or this build of torch / JAX) lacks."""


LOG_TERMS = ("log_likelihood", "log_prior", "log_q")
"""The three per-draw log-densities of :meth:`VAECore.log_prob_terms`."""


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor, JAX array or array-like as a NumPy array (detached, on the host)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def float64(x: Any) -> np.ndarray:
    """:func:`to_numpy` in float64."""
    return np.asarray(to_numpy(x), dtype=np.float64)


def init_params(spec: ModelSpec, *, seed: int = 0,
                num_data: int | None = None) -> dict[str, np.ndarray]:
    """Initial values (float64 NumPy) of every parameter of a VAE, keyed by flat name."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    classes = spec.condition.classes if spec.condition is not None else 0
    if spec.posterior.amortized:
        params |= init_encoder(spec.encoder, spec.data_shape,
                               spec.posterior.encoder_size(spec.latent_dim), rng, classes)
    else:
        if num_data is None:
            raise ValueError("posterior family 'none' stores one code per datapoint: "
                             "pass num_data=<size of the training set> to build()")
        params |= spec.posterior.init_params(spec.latent_dim, num_data, rng)
    params |= init_decoder(spec.decoder, spec.latent_dim, spec.data_shape,
                           spec.likelihood.outputs_per_value, rng, classes)
    params |= class_prior_params(spec, prior_init_params(spec, rng))
    params |= spec.likelihood.init_params()
    return params


def prior_init_params(spec: ModelSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The prior's initial parameters; a prior that reads the encoder (``uses_encoder``)
    also gets the data's shape and range."""
    if not spec.prior.uses_encoder:
        return spec.prior.init_params(spec.latent_dim, rng)
    return spec.prior.init_params(spec.latent_dim, rng, data_shape=spec.data_shape,
                                  data_range=spec.likelihood.data_range)


def sample_labels(spec: ModelSpec, num_samples: int, c: Any = None) -> np.ndarray | None:
    """The labels of ``vae.sample``: None for an unconditioned spec; for a conditioned one
    ``c`` (one label for every sample, or one per sample), by default the classes in turn
    0, 1, …, C − 1, 0, … (equal numbers per class when C divides ``num_samples``)."""
    if spec.condition is not None and c is None:
        c = np.arange(num_samples) % spec.condition.classes
    elif c is not None and np.ndim(c) == 0:
        c = np.full(num_samples, c)
    return check_labels(spec, c, num_samples)


def prior_sample_shape(d: Any, num_samples: int) -> tuple[int, ...]:
    """Sample shape that gives ``num_samples`` draws of a prior site: one per row of a
    class-conditional prior (batch shape ``(num_samples,)``), else ``(num_samples,)``."""
    return () if tuple(d.batch_shape) else (num_samples,)


def check_param_names(own: dict[str, Any], given: dict[str, Any]) -> None:
    """Raise if ``given`` does not have exactly the parameter names of ``own``."""
    missing, extra = sorted(set(own) - set(given)), sorted(set(given) - set(own))
    if missing or extra:
        raise ValueError(f"parameter names do not match this model: missing {missing}, "
                         f"unexpected {extra}")


class VAECore(abc.ABC):
    """Distributions of a VAE given ``self.param(name)``; see the backends for the rest.

    Shapes: ``x`` is ``(..., B, D)``; latent values may carry extra leading particle
    dimensions ``(K, B, d)``; every log-density returned is per datapoint, ``(..., B)``.
    ``c``: the integer class labels ``(B,)`` of a conditioned spec (``[condition]``), which
    every method that reaches a network or the prior takes; None otherwise.
    """

    ops: ClassVar[Any]
    backend: ClassVar[str]
    compiled: ClassVar[bool]
    """Whether :meth:`compute` and :meth:`weigh` compile per input shape (JAX): callers then
    pad batches to one size instead of passing ragged ones."""

    def __init__(self, spec: ModelSpec, score_function_sites: tuple[str, ...] = ()) -> None:
        unknown = set(score_function_sites) - set(spec.posterior.sites)
        if unknown:
            raise ValueError(f"score_function_sites {sorted(unknown)} are not latent sites of "
                             f"this model; its sites are {list(spec.posterior.sites)}")
        self.spec = spec
        self.score_function_sites = tuple(score_function_sites)
        rng = np.random.default_rng(0)
        self._prior_param_names = tuple(prior_init_params(spec, rng))
        self._likelihood_param_names = tuple(spec.likelihood.init_params())

    @abc.abstractmethod
    def param(self, name: str) -> Any:
        """The current value of a parameter, registered with the backend's SVI."""

    @property
    def sites(self) -> tuple[str, ...]:
        """Latent sample sites, in guide order."""
        return self.spec.posterior.sites

    @property
    def has_decoder_mean(self) -> bool:
        """Whether E[x | z] is available (``decode``): not under a local autoregressive
        decoder, whose x is drawn pixel by pixel."""
        return not self.spec.decoder.masked_layers

    @property
    def dtype_name(self) -> str:
        """``"float32"`` or ``"float64"``, whatever the backend's dtype object."""
        return str(self.dtype).removeprefix("torch.")

    # -- distributions
    def condition_input(self, like: Any, c: Any) -> Any:
        """one_hot(c) ``(B, C)`` in ``like``'s dtype for a conditioned spec, None otherwise;
        a conditioned model without labels (or labels for an unconditioned one) is an error."""
        if not require_labels_iff_conditioned(self.spec, c):
            return None
        return self.ops.one_hot(like, c, self.spec.condition.classes)

    def encoder_output(self, x: Any, c: Any = None) -> Any:
        """h(x) (h(x, c) when conditioned): the encoder network's output, which the posterior
        family maps to q(z | x); the encoder reads ``x · likelihood.input_scale`` (8-bit
        pixels as x / 255)."""
        scale = self.spec.likelihood.input_scale
        return apply_encoder(self.ops, self.param, self.spec.encoder, self.spec.data_shape,
                             x if scale == 1 else x * scale, self.condition_input(x, c))

    def posterior(self, x: Any, idx: Any = None, h: Any = None, c: Any = None
                  ) -> dict[str, Any]:
        """q(· | x) for each latent site; ``idx`` (datapoint indices) for encoder-free codes.

        ``h`` replaces the encoder's output (per-datapoint optimization of the guide's
        parameters, as in the inference gaps).
        """
        spec, ops = self.spec, self.ops
        if spec.posterior.amortized:
            h = self.encoder_output(x, c) if h is None else h
            dists = spec.posterior.distributions(ops, h, spec.scale_floor)
        else:
            if idx is None:
                raise ValueError("this model has no encoder (posterior family 'none'): pass the "
                                 "datapoint indices, e.g. model(x, idx=batch_indices)")
            codes = {name: self.param(name) for name in spec.posterior.param_names}
            dists = spec.posterior.distributions(ops, codes, idx, spec.scale_floor)
        return {site: (ops.score_function(d) if site in self.score_function_sites else d)
                for site, d in dists.items()}

    def prior(self, like: Any, c: Any = None) -> dict[str, Any]:
        """p(·) (p(· | c) when conditioned) for each latent site (broadcastable over the data
        plate). A prior that reads the encoder (``uses_encoder``: the VampPrior) gets the
        encoder, the posterior family and the data range."""
        spec, ops = self.spec, self.ops
        params = {name: self.param(name) for name in self._prior_param_names}
        y = self.condition_input(like, c)
        if y is not None and spec.condition.learned_prior:
            params = class_rows(params, y)
        extra = {"encoder": self.encoder_output, "posterior": spec.posterior,
                 "data_range": spec.likelihood.data_range} if spec.prior.uses_encoder else {}
        value = spec.prior.distribution(ops, params, like, spec.latent_dim, spec.scale_floor,
                                        **extra)
        return spec.posterior.model_latents(ops, like, spec.latent_dim, value)

    def code(self, latents: dict[str, Any]) -> Any:
        """The code z fed to the decoder (``gate * slab`` for masked codes)."""
        return self.spec.posterior.code(latents)

    def decoder_output(self, z: Any, c: Any = None) -> Any:
        """Decoder network output f(z) (f(z, c) when conditioned): Bernoulli logits, Gaussian
        means or the 8-bit likelihoods' ``outputs_per_value`` outputs per value."""
        spec = self.spec
        return apply_decoder(self.ops, self.param, spec.decoder, spec.data_shape,
                             spec.likelihood.outputs_per_value, z, self.condition_input(z, c))

    def likelihood(self, z: Any, c: Any = None) -> Any:
        """p(x | z): factorized, or locally autoregressive with ``[decoder] masked_layers``."""
        spec, ops = self.spec, self.ops
        params = {name: self.param(name) for name in self._likelihood_param_names}

        def pixel(out: Any) -> Any:
            return spec.likelihood.distribution(ops, params, out, spec.scale_floor)

        out = self.decoder_output(z, c)
        if not spec.decoder.masked_layers:
            return pixel(out)
        return local_autoregressive(ops, self.param, spec.decoder, spec.data_shape, pixel, out)

    def log_likelihood(self, x: Any, z: Any, c: Any = None) -> Any:
        """log p(x | z) per datapoint: the family's fused ``log_density`` where it has one
        and the decoder is factorized, else the distribution's ``log_prob``."""
        lik = self.spec.likelihood
        if not hasattr(lik, "log_density") or self.spec.decoder.masked_layers:
            return self.likelihood(z, c).log_prob(x)
        params = {name: self.param(name) for name in self._likelihood_param_names}
        return lik.log_density(self.ops, params, self.decoder_output(z, c), self.spec.scale_floor,
                               x)

    # -- per-datapoint log-densities
    def log_prob_terms(self, x: Any, latents: dict[str, Any], idx: Any = None,
                       h: Any = None, c: Any = None, prior: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
        """log p(x | z), log p(z) and log q(z | x) per datapoint at the given latent values.

        The Monte Carlo ELBO of one draw is ``log_likelihood + log_prior - log_q``
        (a log importance weight). ``h``: see :meth:`posterior`. ``prior``: the value of
        :meth:`prior`, when the caller built it once for many chunks of draws (the VampPrior
        encodes its K pseudo-inputs each time it is built).
        """
        q = self.posterior(x, idx, h, c)
        p = self.prior(x, c) if prior is None else prior
        return {
            "log_likelihood": self.log_likelihood(x, self.code(latents), c),
            "log_prior": sum(p[s].log_prob(latents[s]) for s in self.sites),
            "log_q": sum(q[s].log_prob(latents[s]) for s in self.sites),
        }

    def kl(self, x: Any, idx: Any = None, h: Any = None, c: Any = None) -> Any:
        """Closed-form KL(q(z | x) ‖ p(z)) per datapoint; only for specs with ``kl='analytic'``."""
        if self.spec.kl != "analytic":
            raise ValueError(f"spec {self.spec.name!r} has kl = {self.spec.kl!r}; the closed-form "
                             "KL is used only when the spec says kl = 'analytic'")
        q = self.posterior(x, idx, h, c)
        p = self.prior(x, c)
        return sum(self.ops.kl_divergence(q[s], p[s]) for s in self.sites)

    def posterior_mean(self, x: Any, idx: Any = None, c: Any = None) -> Any:
        """E_q[z | x] (the family's ``code_mean``)."""
        return self.spec.posterior.code_mean(self.ops, self.posterior(x, idx, c=c))

    def weigh_chunk(self, x: Any, latents: dict[str, Any], idx: Any = None, h: Any = None,
                    all_terms: bool = False, c: Any = None, prior: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """One chunk of importance sampling at given draws: ``log_weight`` and
        ``log_likelihood`` ``(K, B)``, in the working dtype; with ``all_terms`` also
        ``log_prior`` and ``log_q``. ``prior``: see :meth:`log_prob_terms`."""
        terms = self.log_prob_terms(x, latents, idx, h, c, prior)
        out = {"log_weight": terms["log_likelihood"] + terms["log_prior"] - terms["log_q"],
               "log_likelihood": terms["log_likelihood"]}
        if all_terms:
            out |= {"log_prior": terms["log_prior"], "log_q": terms["log_q"]}
        return out

    # -- what each backend adds for code that runs on either
    @abc.abstractmethod
    def as_index(self, idx: Any) -> Any:
        """Datapoint indices (or class labels) as the backend's integer array (None stays
        None)."""

    @abc.abstractmethod
    def rng_key(self, seed: int) -> Any:
        """What :meth:`sample_latents` takes as ``seed`` inside :meth:`inference`: a JAX key,
        or None on Pyro (draws come from the torch generator :meth:`inference` seeded)."""

    @abc.abstractmethod
    def inference(self, seed: int) -> contextlib.AbstractContextManager:
        """A context without gradients whose draws are seeded by ``seed`` (torch's generator
        forked, so the caller's random state is untouched; nothing to do on JAX)."""

    @abc.abstractmethod
    def compute(self, fn: Any, static: tuple = (), *args: Any) -> Any:
        """``fn(self, *static, *args)`` without gradients (``fn`` at module level: on JAX it is
        compiled once per (model, function, static values, shapes))."""

    @abc.abstractmethod
    def weigh(self, x: Any, idx: Any, num_samples: int, per_chunk: int, seed: int, batch: int,
              *, latents: dict | None = None, h: Any = None, keep_draws: bool = False,
              c: Any = None) -> tuple[dict[str, Any], Any]:
        """Importance weights of ``num_samples`` draws of q for each row of ``x``, drawn
        ``per_chunk`` at a time (call inside :meth:`inference`): the :meth:`weigh_chunk`
        values (all terms and the draws ``draw:<site>`` with ``keep_draws``) and the
        closed-form KL (0 unless the spec's ``kl`` is analytic). ``batch`` numbers the call,
        so that JAX draws a fresh key per batch; ``c`` the rows' labels. Returns backend
        arrays, possibly with more than ``num_samples`` rows (the caller keeps the first)."""
