"""Pyro backend: torch tensors, Pyro's param store, ``pyro.sample`` model and guide.

Parameters are ``torch.nn.Parameter`` objects owned by the VAE and registered in Pyro's
param store under their flat names (``decoder.0.weight``, ``prior.loc``, ...), the same
names the NumPyro backend and the checkpoints use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyro
import pyro.distributions as pdist
import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

from ppl_vae.models import _core
from ppl_vae.models.array_ops import ArrayOps
from ppl_vae.spec import ModelSpec


class _ScoreIndependent(pdist.Independent):
    """``Independent`` with a settable ``has_rsample``: torch's is a read-only property, so
    ``has_rsample_(False)`` and the plate broadcast's copy of the flag both fail on it."""

    @property
    def has_rsample(self) -> bool:
        return getattr(self, "_has_rsample", self.base_dist.has_rsample)

    @has_rsample.setter
    def has_rsample(self, value: bool) -> None:
        self._has_rsample = value


def mark_score_function(d: Any) -> Any:
    """Mark a Pyro distribution non-reparameterized: ``Independent`` (``.to_event``) and
    masked ones (whose flag is a read-only property) are rebuilt around a marked base."""
    if isinstance(d, pdist.MaskedDistribution):
        return pdist.MaskedDistribution(mark_score_function(d.base_dist), d._mask)
    if isinstance(d, torch.distributions.Independent):
        d = _ScoreIndependent(d.base_dist, d.reinterpreted_batch_ndims)
    return _core.score_marked(d.has_rsample_(False))


class FunctionalDistribution(_core.FunctionalDistributionBase, pdist.TorchDistribution):
    """:class:`~ppl_vae.models._core.FunctionalDistributionBase` as a Pyro distribution."""

    _shape = torch.Size

    def sample(self, sample_shape: tuple = ()) -> torch.Tensor:
        self._check_sample_shape(sample_shape)
        with torch.no_grad():
            return self._sample(lambda d: d.sample(sample_shape))


class TorchOps(ArrayOps):
    """The array operations the families use, and Pyro's primitives, in torch."""

    xp = torch
    dist = pdist
    FunctionalDistribution = FunctionalDistribution
    sample = staticmethod(pyro.sample)
    deterministic = staticmethod(pyro.deterministic)
    no_grad = staticmethod(torch.no_grad)
    score_function = staticmethod(mark_score_function)
    softplus = staticmethod(F.softplus)
    sigmoid = staticmethod(torch.sigmoid)
    linear = staticmethod(F.linear)
    logsumexp = staticmethod(torch.logsumexp)
    kl_divergence = staticmethod(torch.distributions.kl_divergence)
    activations = {"relu": torch.relu, "tanh": torch.tanh, "softplus": F.softplus, "elu": F.elu}

    @staticmethod
    def like(x: torch.Tensor) -> dict[str, Any]:
        return {"dtype": x.dtype, "device": x.device}

    @staticmethod
    def draw(d: Any, key: None, sample_shape: tuple[int, ...]) -> torch.Tensor:
        """A draw of ``sample_shape`` from torch's generator (``key`` is always None)."""
        return d.sample(sample_shape)

    @staticmethod
    def split(h: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
        return torch.chunk(h, n, dim=-1)

    @staticmethod
    def stop_gradient(x: torch.Tensor) -> torch.Tensor:
        return x.detach()

    @staticmethod
    def log_softmax(x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x, dim=-1)

    @staticmethod
    def one_hot(like: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
        # a comparison, not F.one_hot, which reads the labels' range back to the host (labels
        # are checked where they enter: ppl_vae.models.conditioning.check_labels); so a
        # recorded ELBO (ppl_vae.training.pyro_replay) can take labels as an input
        classes = torch.arange(n, device=labels.device)
        return (labels.long().unsqueeze(-1) == classes).to(dtype=like.dtype, device=like.device)

    @staticmethod
    def take_level(table: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """``table[..., level]`` elementwise: ``level`` (integer-valued) indexes the last axis."""
        index = level.long().unsqueeze(-1).expand(*table.shape[:-1], 1)
        return torch.gather(table, -1, index).squeeze(-1)

    @staticmethod
    def cast_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)

    @staticmethod
    def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int,
               padding: int) -> torch.Tensor:
        """NCHW input, OIHW weight."""
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    @staticmethod
    def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int,
                         padding: int, output_padding: int) -> torch.Tensor:
        """NCHW input, weight ``(in, out, kh, kw)`` as ``torch.nn.ConvTranspose2d``."""
        return F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding,
                                  output_padding=output_padding)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present; asking for CUDA without it is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _core.DeviceError("device='cuda' was requested but torch sees no CUDA device "
                           f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); "
                           "use device='cpu' or 'auto', or install a CUDA build of torch")
    return device


class PyroVAE(_core.VAECore):
    """A VAE whose ``model`` and ``guide`` (:class:`~ppl_vae.models._core.VAECore`) are Pyro
    programs."""

    ops = TorchOps
    backend = "pyro"
    compiled = False

    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray], *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 score_function_sites: tuple[str, ...] = ()) -> None:
        super().__init__(spec, score_function_sites)
        self.device = resolve_device(device)
        self.dtype = dtype
        self._params = {name: torch.nn.Parameter(torch.as_tensor(value, dtype=dtype,
                                                                 device=self.device))
                        for name, value in params.items()}

    # -- parameters
    def param(self, name: str) -> torch.Tensor:
        value = self._params[name]
        drop_stale(name, value)
        return pyro.param(name, value)

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self._params.values())

    def get_params(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy array, keyed by flat name."""
        return {name: p.detach().cpu().numpy().copy() for name, p in self._params.items()}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(p.shape) for name, p in self._params.items()}

    def _assign(self, params: dict[str, Any]) -> None:
        """Copy the values in place (the objects Pyro's param store holds stay)."""
        with torch.no_grad():
            for name, value in params.items():
                target = self._params[name]
                value = torch.from_numpy(np.array(value))  # a writable copy
                target.copy_(value.to(dtype=target.dtype, device=target.device))

    def as_tensor(self, x: Any) -> torch.Tensor:
        """Data as a tensor of this VAE's dtype and device."""
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x,
                               dtype=self.dtype, device=self.device)

    def data_plate(self, x: torch.Tensor, idx: torch.Tensor | None, num_data: int | None):
        batch = x.shape[-2]
        if idx is None:
            idx = torch.arange(batch, device=x.device)
        return pyro.plate("data", num_data or batch, subsample=idx, dim=-1)

    @contextlib.contextmanager
    def random_keys(self, seed: int | None, count: int) -> Iterator[list[None]]:
        with self._seeded(seed):
            yield [None] * count

    # -- backend-independent evaluation (see VAECore)
    def as_index(self, idx: Any) -> torch.Tensor | None:
        if idx is None:
            return None
        return torch.as_tensor(idx if torch.is_tensor(idx) else np.asarray(idx),
                               device=self.device)

    def rng_key(self, seed: int) -> None:
        return None

    @contextlib.contextmanager
    def inference(self, seed: int) -> Iterator[None]:
        # Data is checked up front by the callers; Pyro's per-distribution argument and
        # support checks would scan every (particle, datapoint, pixel) value again (2x slower
        # measured). A NaN from the networks still surfaces in the estimates.
        with torch.inference_mode(), self._seeded(seed), pyro.validation_enabled(False):
            yield

    def compute(self, fn: Any, static: tuple = (), *args: Any) -> Any:
        with torch.inference_mode():
            return fn(self, *static, *args)

    def weigh(self, x: Any, idx: Any, num_samples: int, per_chunk: int, seed: int, batch: int,
              *, latents: dict | None = None, h: Any = None, keep_draws: bool = False,
              c: Any = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        xb, ib = self.as_tensor(x), self.as_index(idx)
        cb = self.condition_input(xb, self.as_index(c))  # once for all chunks, as the prior
        hb = None if h is None else self.as_tensor(h)
        prior = self.prior(xb, cb)
        parts = []
        for k0 in range(0, num_samples, per_chunk):
            k1 = min(k0 + per_chunk, num_samples)
            if latents is None:
                lat = self.sample_latents(xb, k1 - k0, ib, h=hb, c=cb)
            else:
                lat = {s: self.as_tensor(v[k0:k1]) for s, v in latents.items()}
            parts.append(self.weigh_chunk(xb, lat, ib, hb, all_terms=keep_draws, c=cb,
                                          prior=prior, keep_draws=keep_draws))
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return out, self.analytic_kl_or_zero(xb, ib, hb, cb)

    def _seeded(self, seed: int | None) -> contextlib.AbstractContextManager:
        if seed is None:
            return contextlib.nullcontext()
        return _forked_generator(self.device, seed)


def drop_stale(name: str, value: torch.Tensor) -> None:
    """Remove a param-store entry of this name that holds another tensor (left by an earlier
    model in the process): the owner's tensors are the truth, else SVI would train the stale
    tensor and the owner would silently never change."""
    store = pyro.get_param_store()
    if name in store and store[name] is not value:
        del store[name]


class _ScoreFunction(Messenger):
    def __init__(self, sites: tuple[str, ...] | None) -> None:
        super().__init__()
        self.sites = sites

    def _pyro_sample(self, msg: dict) -> None:
        if (not msg["is_observed"] and not isinstance(msg["fn"], _Subsample)
                and (self.sites is None or msg["name"] in self.sites)):
            msg["fn"] = mark_score_function(msg["fn"])


def score_function(fn: Any, sites: tuple[str, ...] | None = None) -> Any:
    """Wrap a Pyro program so its latent sites (all, or ``sites``) use score-function
    gradients: Pyro's ELBOs then differentiate log q, not the sample path (Williams 1992)."""
    return _ScoreFunction(tuple(sites) if sites is not None else None)(fn)


@contextlib.contextmanager
def _forked_generator(device: torch.device, seed: int) -> Iterator[None]:
    """torch's generator (and the device's) forked and seeded; restored on exit."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
