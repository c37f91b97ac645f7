"""What a VAE computes, written once for both backends.

:class:`VAECore` turns a spec and a parameter getter into the distributions of the model and
the guide, and runs the programs themselves — ``model``, ``guide``, ``encode``, ``decode``,
``reconstruct``, ``sample``, ``sample_latents`` — through ``ops``, the backend's namespace of
array operations and primitives (``ops.sample``, ``ops.deterministic``, ``ops.draw``,
``ops.no_grad``). A backend subclass adds only what differs: parameter storage, its data plate,
random keys, devices, and how a function runs without gradients (:meth:`VAECore.compute`,
:meth:`VAECore.inference`) — so the evaluation and diagnostics code above it never asks which
backend it has. :class:`FunctionalDistributionBase` is the one definition of a distribution
given by functions; each backend derives it from its library's ``Distribution``.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ppl_vae.families import class_prior_params, class_rows
from ppl_vae.models.conditioning import check_labels, require_labels_iff_conditioned
from ppl_vae.models.memory import check_model_fits
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
    """Initial values (float64 NumPy) of every parameter of a VAE, keyed by flat name; a spec
    too large for the machine's memory is refused first
    (:func:`~ppl_vae.models.memory.check_model_fits`)."""
    check_model_fits(spec, num_data)
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


class OneHotLabels(NamedTuple):
    """one_hot(c) of a conditioned model's labels, built once per program run and handed to
    every method that takes ``c`` (the encoder, the prior and the decoder all read it)."""

    value: Any


def score_marked(d: Any) -> Any:
    """``d`` once a backend marked it for score-function gradients; a distribution that still
    claims ``rsample`` could not be marked."""
    if d.has_rsample:
        raise TypeError(f"cannot mark {type(d).__name__} for score-function gradients")
    return d


class VAECore(abc.ABC):
    """A VAE's distributions given ``self.param(name)``, and its programs, over ``self.ops``.

    Shapes: ``x`` is ``(..., B, D)``; latent values may carry extra leading particle
    dimensions ``(K, B, d)``; every log-density returned is per datapoint, ``(..., B)``.
    ``c``: the integer class labels ``(B,)`` of a conditioned spec (``[condition]``), or their
    :class:`OneHotLabels` (:meth:`condition_input`), which every method that reaches a network
    or the prior takes; None otherwise.
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

    @abc.abstractmethod
    def get_params(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy array, keyed by flat name."""

    @abc.abstractmethod
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape, keyed by flat name."""

    @abc.abstractmethod
    def _assign(self, params: dict[str, Any]) -> None:
        """Put checked values (every name, the right shapes) into the parameters."""

    def set_params(self, params: dict[str, Any]) -> None:
        """Replace every parameter's value (the names and shapes of :meth:`get_params`;
        NumPy, torch or JAX arrays)."""
        own = self.param_shapes()
        missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
        if missing or extra:
            raise ValueError(f"parameter names do not match this model: missing {missing}, "
                             f"unexpected {extra}")
        for name, value in params.items():
            if tuple(np.shape(value)) != own[name]:
                raise ValueError(f"parameter {name!r} has shape {tuple(np.shape(value))}, "
                                 f"expected {own[name]}")
        self._assign(params)

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

    # -- the programs
    def model(self, x: Any, idx: Any = None, num_data: int | None = None, c: Any = None) -> None:
        """p(x, z) (p(x, z | c)) over a ``data`` plate (dim −1) of the minibatch ``x``
        ``(B, D)``; ``idx`` are the datapoint indices (needed by encoder-free codes; they also
        fix the plate's subsample), ``num_data`` the dataset size (the plate scales the
        minibatch by ``num_data / B``), ``c`` the integer labels ``(B,)`` of a conditioned
        spec. Sites: ``z`` (a deterministic site for masked codes), ``gate``, ``slab``, ``x``."""
        ops, y = self.ops, self.condition_input(x, c)
        with self.data_plate(x, idx, num_data):
            latents = {site: ops.sample(site, d) for site, d in self.prior(x, y).items()}
            z = self.code(latents)
            if "z" not in latents:
                ops.deterministic("z", z, event_dim=1)
            ops.sample("x", self.likelihood(z, y), obs=x)

    def guide(self, x: Any, idx: Any = None, num_data: int | None = None, c: Any = None) -> None:
        """q(z | x) (q(z | x, c)) with the signature and plate of :meth:`model`."""
        y = self.condition_input(x, c)
        with self.data_plate(x, idx, num_data) as ind:
            for site, d in self.posterior(x, ind, c=y).items():
                self.ops.sample(site, d)

    def encode(self, x: Any, idx: Any = None, c: Any = None) -> Any:
        """E_q[z | x] (E_q[z | x, c] when conditioned), without gradients."""
        with self.ops.no_grad():
            return self.posterior_mean(self.as_tensor(x), self.as_index(idx), self._labels(c))

    def decode(self, z: Any, c: Any = None) -> Any:
        """E[x | z] (E[x | z, c]): Bernoulli probabilities, Gaussian means or 8-bit means."""
        with self.ops.no_grad():
            return self.likelihood(self.as_tensor(z), self._labels(c)).mean

    def decode_or_draw(self, z: Any, c: Any = None, seed: Any = None) -> Any:
        """What to show for the codes ``z``: E[x | z] (:meth:`decode`) where the decoder has
        a mean, else (a local autoregressive decoder) one draw x ~ p(x | z), pixel by pixel
        in raster order with the decoder's own sampler. ``seed``: see :meth:`random_keys`."""
        if self.has_decoder_mean:
            return self.decode(z, c)
        with self.ops.no_grad(), self.random_keys(seed, 1) as keys:
            return self.ops.draw(self.likelihood(self.as_tensor(z), self._labels(c)), keys[0],
                                 ())

    def reconstruct(self, x: Any, idx: Any = None, c: Any = None) -> Any:
        """decode(encode(x))."""
        return self.decode(self.encode(x, idx, c), c)

    def sample(self, num_samples: int, seed: Any = None, c: Any = None) -> Any:
        """Means E[x | z] of ``num_samples`` draws z ~ p(z); conditioned: E[x | z, c_n] with
        z ~ p(z | c_n) for the ``num_samples`` labels ``c`` (:func:`sample_labels`). Under a
        local autoregressive decoder, which has no mean, draws x ~ p(x | z) instead
        (:meth:`decode_or_draw`). ``seed``: see :meth:`random_keys`."""
        with self.ops.no_grad():
            c = self.as_index(sample_labels(self.spec, num_samples, c))
            prior = self.prior(self.as_tensor(np.zeros(())), c)
            extra = 0 if self.has_decoder_mean else 1  # a key for the pixels' draws
            with self.random_keys(seed, len(prior) + extra) as keys:
                latents = {s: self.ops.draw(d, key, prior_sample_shape(d, num_samples))
                           for (s, d), key in zip(prior.items(), keys, strict=False)}
                if extra:
                    return self.ops.draw(self.likelihood(self.code(latents), c), keys[-1], ())
            return self.decode(self.code(latents), c)

    def sample_latents(self, x: Any, num_samples: int, idx: Any = None, seed: Any = None,
                       h: Any = None, c: Any = None) -> dict[str, Any]:
        """``num_samples`` draws from q(· | x) per datapoint, shape ``(K, B, ...)``, without
        gradients; ``seed``: see :meth:`random_keys`."""
        with self.ops.no_grad():
            q = self.posterior(self.as_tensor(x), self.as_index(idx),
                               None if h is None else self.as_tensor(h), self._labels(c))
            with self.random_keys(seed, len(q)) as keys:
                return {s: self.ops.draw(d, key, (num_samples,))
                        for (s, d), key in zip(q.items(), keys, strict=True)}

    # -- distributions
    def condition_input(self, like: Any, c: Any) -> OneHotLabels | None:
        """:class:`OneHotLabels` of ``c`` ``(B, C)`` in ``like``'s dtype for a conditioned
        spec (``c`` itself when it already is one), None otherwise; a conditioned model
        without labels (or labels for an unconditioned one) is an error."""
        if isinstance(c, OneHotLabels):
            return c
        if not require_labels_iff_conditioned(self.spec, c):
            return None
        return OneHotLabels(self.ops.one_hot(like, c, self.spec.condition.classes))

    def _labels(self, c: Any) -> Any:
        """Labels as the backend's integer array; :class:`OneHotLabels` and None as they are."""
        return c if c is None or isinstance(c, OneHotLabels) else self.as_index(c)

    def _one_hot(self, like: Any, c: Any) -> Any:
        y = self.condition_input(like, c)
        return None if y is None else y.value

    def encoder_output(self, x: Any, c: Any = None) -> Any:
        """h(x) (h(x, c) when conditioned): the encoder network's output, which the posterior
        family maps to q(z | x); the encoder reads ``x · likelihood.input_scale`` (8-bit
        pixels as x / 255)."""
        scale = self.spec.likelihood.input_scale
        return apply_encoder(self.ops, self.param, self.spec.encoder, self.spec.data_shape,
                             x if scale == 1 else x * scale, self._one_hot(x, c))

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
        y = self._one_hot(like, c)
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
                             spec.likelihood.outputs_per_value, z, self._one_hot(z, c))

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
        c = self.condition_input(x, c)
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
        c = self.condition_input(x, c)
        q = self.posterior(x, idx, h, c)
        p = self.prior(x, c)
        return sum(self.ops.kl_divergence(q[s], p[s]) for s in self.sites)

    def analytic_kl_or_zero(self, x: Any, idx: Any = None, h: Any = None, c: Any = None) -> Any:
        """:meth:`kl` for a spec with ``kl = 'analytic'``, else a scalar 0 (what
        :meth:`weigh` returns beside the weights)."""
        if self.spec.kl == "analytic":
            return self.kl(x, idx, h, c)
        return self.ops.full(x, (), 0.0)

    def posterior_mean(self, x: Any, idx: Any = None, c: Any = None) -> Any:
        """E_q[z | x] (the family's ``code_mean``)."""
        return self.spec.posterior.code_mean(self.ops, self.posterior(x, idx, c=c))

    def weigh_chunk(self, x: Any, latents: dict[str, Any], idx: Any = None, h: Any = None,
                    all_terms: bool = False, c: Any = None, prior: dict[str, Any] | None = None,
                    keep_draws: bool = False) -> dict[str, Any]:
        """One chunk of importance sampling at given draws: ``log_weight`` and
        ``log_likelihood`` ``(K, B)``, in the working dtype; with ``all_terms`` also
        ``log_prior`` and ``log_q``, with ``keep_draws`` also the draws (``draw:<site>``).
        ``prior``: see :meth:`log_prob_terms`."""
        terms = self.log_prob_terms(x, latents, idx, h, c, prior)
        out = {"log_weight": terms["log_likelihood"] + terms["log_prior"] - terms["log_q"],
               "log_likelihood": terms["log_likelihood"]}
        if all_terms:
            out |= {"log_prior": terms["log_prior"], "log_q": terms["log_q"]}
        if keep_draws:
            out |= {f"draw:{s}": v for s, v in latents.items()}
        return out

    # -- what each backend adds for code that runs on either
    @abc.abstractmethod
    def as_tensor(self, x: Any) -> Any:
        """Data as the backend's array in this VAE's dtype (and device)."""

    @abc.abstractmethod
    def as_index(self, idx: Any) -> Any:
        """Datapoint indices (or class labels) as the backend's integer array (None stays
        None)."""

    @abc.abstractmethod
    def data_plate(self, x: Any, idx: Any, num_data: int | None) -> Any:
        """The ``data`` plate (dim −1) over the rows of ``x``, subsampled at ``idx`` (default
        all rows) from ``num_data`` (default the batch size); entering it gives the indices."""

    @abc.abstractmethod
    def random_keys(self, seed: Any, count: int) -> contextlib.AbstractContextManager:
        """A context giving ``count`` keys for ``ops.draw``: on JAX split from ``seed`` (an
        integer or a key; 0 when None); on torch ``None`` each, the draws coming from torch's
        generator, forked and seeded by ``seed`` when one is given."""

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
        values (all terms and the draws ``draw:<site>`` with ``keep_draws``) and
        :meth:`analytic_kl_or_zero`. ``batch`` numbers the call, so that JAX draws a fresh
        key per batch; ``c`` the rows' labels. Returns backend arrays, possibly with more than
        ``num_samples`` rows (the caller keeps the first)."""


class FunctionalDistributionBase:
    """A distribution given by functions (the families' 8-bit likelihoods, the local
    autoregressive decoder, the VampPrior and flow prior): ``log_prob(x)``, ``sample(draw)``
    where ``draw(d)`` samples a library distribution, and ``mean()``; ``variance()`` optional.
    Only single draws (``sample_shape = ()``) unless ``any_sample_shape``: ``sample`` then maps
    draws of any leading shape, and ``draw(d)`` draws ``sample_shape`` of them. Each backend
    derives it from its library's ``Distribution`` and adds ``sample`` with its signature."""

    arg_constraints: ClassVar[dict] = {}
    _shape: ClassVar[Any] = tuple

    def __init__(self, *, log_prob: Any, sample: Any, mean: Any, batch_shape: tuple,
                 event_shape: tuple, support: Any, any_sample_shape: bool = False,
                 variance: Any = None) -> None:
        self._log_prob, self._sample, self._mean, self._support = log_prob, sample, mean, support
        self._any_sample_shape, self._variance = any_sample_shape, variance
        super().__init__(self._shape(batch_shape), self._shape(event_shape), validate_args=False)

    @property
    def support(self) -> Any:
        return self._support

    @property
    def mean(self) -> Any:
        return self._mean()

    @property
    def variance(self) -> Any:
        """``variance()`` where given; otherwise NotImplementedError, as the libraries do."""
        if self._variance is None:
            raise NotImplementedError("this distribution has no closed-form variance")
        return self._variance()

    def log_prob(self, value: Any) -> Any:
        return self._log_prob(value)

    def _check_sample_shape(self, sample_shape: tuple) -> None:
        if tuple(sample_shape) and not self._any_sample_shape:
            raise ValueError("this distribution draws one sample at a time; give p(x | z) a "
                             "batch of z instead of a sample_shape")
