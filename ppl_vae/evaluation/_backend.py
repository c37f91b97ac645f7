"""Backend glue for the evaluation modules: arrays in, NumPy float64 out, seeded draws."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ppl_vae.evaluation._lazy import lazy_jit


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor, JAX array or array-like as a NumPy array (detached, on the host)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def float64(x: Any) -> np.ndarray:
    return np.asarray(to_numpy(x), dtype=np.float64)


def as_index(vae: Any, idx: Any) -> Any:
    """Datapoint indices as the backend's integer array (None stays None)."""
    if idx is None:
        return None
    idx = to_numpy(idx)
    if vae.backend == "pyro":
        import torch

        return torch.as_tensor(idx, device=vae.device)
    import jax.numpy as jnp

    return jnp.asarray(idx)


@contextlib.contextmanager
def inference_mode(vae: Any, seed: int) -> Iterator[None]:
    """Inference mode (no autograd) and a seeded, forked torch generator (Pyro); nothing to
    do on JAX."""
    if vae.backend != "pyro":
        yield
        return
    import torch

    devices = [vae.device] if vae.device.type == "cuda" else []
    with torch.inference_mode(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def draw_latents(vae: Any, x: Any, num_samples: int, idx: Any, seed: int) -> dict[str, Any]:
    """``num_samples`` draws of q(· | x) per datapoint; call inside :func:`inference_mode`
    (Pyro draws from torch's generator, seeded there; JAX from ``seed``)."""
    if vae.backend == "pyro":
        return vae.sample_latents(x, num_samples, idx=idx)
    return vae.sample_latents(x, num_samples, idx=idx, seed=seed)


def batches(num: int, size: int) -> Iterator[slice]:
    for start in range(0, num, size):
        yield slice(start, min(start + size, num))


def call(vae: Any, fn: Any, static: tuple = (), *args: Any) -> Any:
    """``fn(vae, *static, *args)`` without gradients, on either backend.

    Pyro: under ``torch.inference_mode``. NumPyro: compiled, with the parameters passed explicitly,
    once per (VAE, function, static values, shapes) — a handful of compiles instead of one
    per eager operation. ``fn`` must be a module-level function (it is a static key).
    """
    if vae.backend == "pyro":
        import torch

        with torch.inference_mode():
            return fn(vae, *static, *args)
    return _compiled_call(vae, fn, tuple(static), vae.params, *args)


def _call_impl(vae: Any, fn: Any, static: tuple, params: dict, *args: Any) -> Any:
    from numpyro import handlers

    with handlers.substitute(data=params):
        return fn(vae, *static, *args)


_compiled_call = lazy_jit(_call_impl, (0, 1, 2))
