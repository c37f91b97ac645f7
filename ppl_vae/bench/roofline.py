"""The roofline: the device's measured matmul rate on a workload's dominant product, and the
floating-point operations of the MLP VAE's workloads.

A workload's fraction of the roofline is (its FLOPs ÷ its seconds) ÷ (FLOP/s of the matrix
product that dominates it, measured by the same backend on the same device moments before).
Only the products count as work; everything else a workload does (sampling, log-densities,
Python) is overhead that the fraction charges against it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ppl_vae.networks import layer_sizes


def decoder_layers(spec: Any) -> list[tuple[int, int]]:
    return layer_sizes(spec.latent_dim, spec.decoder, spec.data_dim)


def encoder_layers(spec: Any) -> list[tuple[int, int]]:
    return layer_sizes(spec.data_dim, spec.encoder, spec.posterior.encoder_size(spec.latent_dim))


def dominant_product(spec: Any) -> tuple[int, int]:
    """(inner, cols) of the decoder's largest layer: rows × inner @ inner × cols per draw."""
    return max(decoder_layers(spec), key=lambda io: io[0] * io[1])


def pair_flops(spec: Any) -> int:
    """FLOPs of one (particle, datapoint) pair of importance sampling: the decoder,
    2 Σ_layers fan_in · fan_out (the encoder runs once per datapoint, not per particle)."""
    return sum(2 * i * o for i, o in decoder_layers(spec))


def gradient_flops(spec: Any, batch: int, particles: int = 1) -> int:
    """FLOPs of one gradient of the minibatch ELBO: the forward products (encoder once,
    decoder once per particle) and the backward ones (weight and input gradients: twice the
    forward, less the input gradient of the first encoder layer, which nothing needs)."""
    enc = sum(2 * batch * i * o for i, o in encoder_layers(spec))
    dec = particles * sum(2 * batch * i * o for i, o in decoder_layers(spec))
    first_in, first_out = encoder_layers(spec)[0]
    return 3 * (enc + dec) - 2 * batch * first_in * first_out


def matmul_rate(backend: str, rows: int, inner: int, cols: int, *, device: Any = None,
                seconds: float = 0.3, min_repeats: int = 3, seed: int = 0) -> float:
    """float32 FLOP/s of (rows × inner) @ (inner × cols) on ``backend`` (``"pyro"``: torch on
    ``device``; ``"numpyro"``: jitted ``jnp.dot`` on the JAX device): the median over the
    products of a ``seconds``-long window (at least ``min_repeats``). The median, not the
    best, because the workloads it is set against run for seconds under the same load: on a
    shared machine a best-of-N rate finds the moments the other processes slept."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(rows, inner)).astype(np.float32)
    b = rng.normal(size=(inner, cols)).astype(np.float32)
    if backend == "pyro":
        import torch

        from ppl_vae.models.pyro_backend import resolve_device

        target = resolve_device(device or "cpu")
        ta, tb = torch.from_numpy(a).to(target), torch.from_numpy(b).to(target)
        sync = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)

        def run() -> None:
            torch.mm(ta, tb)
            sync()
    else:
        import jax
        import jax.numpy as jnp

        from ppl_vae.models.numpyro_backend import resolve_device

        target = resolve_device(device)
        ja, jb = jax.device_put(a, target), jax.device_put(b, target)
        dot = jax.jit(jnp.dot)

        def run() -> None:
            dot(ja, jb).block_until_ready()
    run()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_repeats or time.perf_counter() < end:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 2.0 * rows * inner * cols / float(np.median(times))
