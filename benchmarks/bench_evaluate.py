"""Throughput of importance-sampled log p(x) against the machine's matmul throughput.

K = 5000 particles per image on the 500 MNIST-5k test images (the IWAE evaluation
protocol), for the decoder-dominated MLP VAE ``gaussian_gaussian`` (784-400-20-400-784,
Bernoulli pixels), on both backends. Throughput is (datapoint × particle) pairs per
second; each pair costs the decoder's 2·(20·400 + 400·784) = 643,200 floating-point
operations (the encoder runs once per datapoint, negligible at K = 5000). The roofline
is the same backend's float32 matmul throughput on the decoder's dominant product
(pairs × 400) @ (400 × 784), measured in the same run before each block of images; the
fraction of roofline is the median over blocks of (IS FLOP rate / matmul FLOP rate).

    python benchmarks/bench_evaluate.py                 # full: 500 images × 5000 particles
    python benchmarks/bench_evaluate.py --smoke         # seconds
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HIDDEN, LATENT, PIXELS = 400, 20, 784
FLOPS_PER_PAIR = 2 * (LATENT * HIDDEN + HIDDEN * PIXELS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=("pyro", "numpyro"),
                        default=["pyro", "numpyro"])
    parser.add_argument("--num-points", type=int, default=500, help="test images")
    parser.add_argument("--num-samples", type=int, default=5000, help="K")
    parser.add_argument("--budget", type=int, default=None, help="pairs decoded at once")
    parser.add_argument("--blocks", type=int, default=10,
                        help="image blocks, each timed beside its own matmul measurement")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (for tests)")
    return parser.parse_args(argv)


def matmul_flops(backend: str, rows: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 FLOP/s of (rows × 400) @ (400 × 784) on ``backend``."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.normal(size=(rows, HIDDEN)).astype(np.float32)
    b = rng.normal(size=(HIDDEN, PIXELS)).astype(np.float32)
    if backend == "pyro":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        torch.mm(ta, tb)

        def run() -> None:
            torch.mm(ta, tb)
    else:
        import jax
        import jax.numpy as jnp

        ja, jb = jnp.asarray(a), jnp.asarray(b)
        dot = jax.jit(jnp.dot)
        dot(ja, jb).block_until_ready()

        def run() -> None:
            dot(ja, jb).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 2 * rows * HIDDEN * PIXELS / best


def main(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    from ppl_vae.data import prepare
    from ppl_vae.evaluation import DEFAULT_BUDGET, importance_sample, plan_chunks
    from ppl_vae.io import write_json
    from ppl_vae.models import build
    from ppl_vae.reports import machine_description

    if args.smoke:
        args.num_points, args.num_samples, args.blocks = 8, 100, 2
    x = prepare("mnist5k", likelihood="bernoulli").test[:args.num_points]
    budget = args.budget or DEFAULT_BUDGET
    plan = plan_chunks(args.num_samples, x.shape[0], budget)
    rows = plan.particles_per_chunk * plan.data_per_batch
    print(f"{machine_description()}; {x.shape[0]} images × K={args.num_samples}; "
          f"{plan.data_per_batch} image(s) × {plan.particles_per_chunk} particles per chunk; "
          f"matmul roofline: ({rows} × {HIDDEN}) @ ({HIDDEN} × {PIXELS}) float32")
    results = []
    for backend in args.backends:
        vae = build("gaussian_gaussian", backend, seed=0)
        blocks = np.array_split(np.arange(x.shape[0]), args.blocks)
        # Warm-up on the first block: compiles the chunk function (NumPyro) for its shapes.
        importance_sample(vae, x[blocks[0]], args.num_samples, budget=budget)
        # Blocks of images alternate with matmul measurements, so the ratio compares the
        # two under the same machine load (shared machines drift by 2x within minutes).
        seconds, ratios, roofs, log_px = 0.0, [], [], []
        for i, block in enumerate(blocks):
            roof = matmul_flops(backend, rows)
            start = time.perf_counter()
            est = importance_sample(vae, x[block], args.num_samples, seed=i, budget=budget)
            elapsed = time.perf_counter() - start
            seconds += elapsed
            roofs.append(roof)
            ratios.append(block.size * args.num_samples * FLOPS_PER_PAIR / elapsed / roof)
            log_px.append(est.log_likelihood)
        pairs_per_s = x.shape[0] * args.num_samples / seconds
        r = {"backend": backend, "images": int(x.shape[0]), "num_samples": args.num_samples,
             "seconds": seconds, "pairs_per_second": pairs_per_s,
             "achieved_gflops": pairs_per_s * FLOPS_PER_PAIR / 1e9,
             "matmul_gflops_median": float(np.median(roofs)) / 1e9,
             "fraction_of_matmul_median": float(np.median(ratios)),
             "fraction_of_matmul_range": [float(min(ratios)), float(max(ratios))],
             "mean_log_likelihood": float(np.concatenate(log_px).mean()),
             "threads": _threads(backend)}
        results.append(r)
        print(f"{backend:8s} {seconds:7.2f} s  {pairs_per_s / 1e6:6.3f} M pairs/s  "
              f"{r['achieved_gflops']:6.1f} GFLOP/s; matmul {r['matmul_gflops_median']:6.1f} "
              f"GFLOP/s (median); fraction of matmul: median "
              f"{100 * r['fraction_of_matmul_median']:.0f}% (blocks "
              f"{100 * min(ratios):.0f}–{100 * max(ratios):.0f}%); mean log p(x) "
              f"{r['mean_log_likelihood']:.2f}")
    if args.out is not None:
        write_json(args.out, {"machine": machine_description(), "budget": budget,
                              "results": results})
    return results


def _threads(backend: str) -> str:
    if backend == "pyro":
        import torch

        return f"torch intra-op threads: {torch.get_num_threads()}"
    import jax

    return f"JAX devices: {', '.join(str(d) for d in jax.devices())}"


if __name__ == "__main__":
    main(parse_args())
