"""Throughput of the evaluation and variance hot paths against the roofline.

Each workload runs in blocks; before each block the roofline (:func:`roofline.matmul_rate`
on the workload's dominant product) is measured again, so the fraction of each block
compares two measurements taken under the same machine load. Reported: the median over
blocks, with the lowest and highest block.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ppl_vae.bench import roofline


def _row(block_fractions: list[float], **fields: Any) -> dict[str, Any]:
    return {**fields, "fraction_of_roofline": float(np.median(block_fractions)),
            "fraction_min": float(min(block_fractions)),
            "fraction_max": float(max(block_fractions)), "blocks": len(block_fractions)}


def importance_product(spec: Any, num_samples: int, num_data: int,
                       budget: int | None = None) -> tuple[int, int, int]:
    """(rows, inner, cols) of the decoder's dominant matmul in one chunk of importance
    sampling: rows are the (particle, datapoint) pairs of the sampler's own chunk plan
    (:func:`ppl_vae.evaluation.sampler_plan`)."""
    from ppl_vae.evaluation import DEFAULT_BUDGET, sampler_plan

    plan = sampler_plan(spec, num_samples, num_data, budget or DEFAULT_BUDGET)
    return (plan.particles_per_chunk * plan.data_per_batch, *roofline.dominant_product(spec))


def importance_throughput(vae: Any, x: np.ndarray, num_samples: int, *, blocks: int,
                          device: Any = None, budget: int | None = None) -> dict[str, Any]:
    """Importance-sampled log p(x) with K = ``num_samples`` on the rows of ``x``, in
    ``blocks`` blocks of images: (particle, datapoint) pairs per second and the fraction of
    the decoder's matmul roofline."""
    from ppl_vae.evaluation import DEFAULT_BUDGET, importance_sample

    budget = budget or DEFAULT_BUDGET
    spec = vae.spec
    rows, inner, cols = importance_product(spec, num_samples, x.shape[0], budget)
    parts = np.array_split(np.arange(x.shape[0]), blocks)
    importance_sample(vae, x[parts[0]], num_samples, budget=budget)  # compiles (NumPyro)
    seconds, fractions, rates, log_px = 0.0, [], [], []
    for i, part in enumerate(parts):
        rate = roofline.matmul_rate(vae.backend, rows, inner, cols, device=device)
        start = time.perf_counter()
        est = importance_sample(vae, x[part], num_samples, seed=i, budget=budget)
        elapsed = time.perf_counter() - start
        seconds += elapsed
        rates.append(rate)
        fractions.append(part.size * num_samples * roofline.pair_flops(spec) / elapsed / rate)
        log_px.append(est.log_likelihood)
    pairs_per_s = x.shape[0] * num_samples / seconds
    return _row(fractions, backend=vae.backend, workload="importance sampling",
                size=f"{x.shape[0]} images x K={num_samples}", seconds=seconds,
                per_second=pairs_per_s, unit="pairs/s",
                gflops=pairs_per_s * roofline.pair_flops(spec) / 1e9,
                roofline_gflops=float(np.median(rates)) / 1e9,
                product=f"({rows} x {inner}) @ ({inner} x {cols})",
                mean_log_px=float(np.concatenate(log_px).mean()))


def variance_throughput(vae: Any, x: np.ndarray, *, estimator: str, num_draws: int,
                        blocks: int, particles: int = 1, device: Any = None) -> dict[str, Any]:
    """Gradient draws of ``estimator`` on the minibatch ``x`` at the current parameters, as
    :func:`ppl_vae.variance.measure_gradients` takes them (``blocks`` calls of
    ``num_draws`` draws): draws per second and the fraction of the matmul roofline at the
    rows one call of the backend multiplies at once."""
    from ppl_vae.variance import measure_gradients
    from ppl_vae.variance.measure import draws_per_call

    spec = vae.spec
    inner, cols = roofline.dominant_product(spec)
    xb = vae.as_tensor(x)
    per_call = draws_per_call(vae.backend, vae, num_draws, particles)
    rows = x.shape[0] * particles * per_call
    flops = roofline.gradient_flops(spec, x.shape[0], particles)
    fractions, rates, per_draw = [], [], []
    for _ in range(blocks):
        rate = roofline.matmul_rate(vae.backend, rows, inner, cols, device=device)
        (moments,) = measure_gradients(vae.model, vae.guide, xb, estimators=[estimator],
                                       num_particles=particles, num_draws=num_draws)
        rates.append(rate)
        per_draw.append(moments.seconds_per_draw)
        fractions.append(flops / moments.seconds_per_draw / rate)
    draws_per_s = 1.0 / float(np.median(per_draw))
    return _row(fractions, backend=vae.backend, workload=f"gradient draws ({estimator})",
                size=f"batch {x.shape[0]}, {num_draws} draws", seconds=float(sum(per_draw))
                * num_draws, per_second=draws_per_s, unit="draws/s",
                gflops=draws_per_s * flops / 1e9, roofline_gflops=float(np.median(rates)) / 1e9,
                product=f"({rows} x {inner}) @ ({inner} x {cols})", mean_log_px=np.nan)
