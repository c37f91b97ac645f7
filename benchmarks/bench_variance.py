"""Gradient draws per second of each estimator, Pyro and NumPyro, for the variance study.

The 784-400-20 MLP VAE (``gaussian_gaussian``: Gaussian posterior, N(0, I) prior, Bernoulli
pixels) at its initialisation, one minibatch of 128 MNIST-5k training images, one particle
(``--particles`` for more). A draw is one gradient of the loss w.r.t. every parameter, as
:func:`ppl_vae.variance.measure_gradients` takes it: sequential ``loss_and_grads`` on Pyro,
``jax.vmap`` over chunks of PRNG keys under ``jax.jit`` on NumPyro (compilation excluded).
The goal for NumPyro is 1,000 draws/s on 2 CPU cores.

    python benchmarks/bench_variance.py [--draws 256] [--backends numpyro pyro] [--threads 1]

Prints draws per second per (backend, estimator, K), and the machine.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pandas as pd  # noqa: E402

import ppl_vae.models  # noqa: E402
from ppl_vae.data import prepare  # noqa: E402
from ppl_vae.reports import machine_description  # noqa: E402
from ppl_vae.variance import measure_gradients  # noqa: E402

ESTIMATORS = ("reparam", "analytic-kl", "score", "score-baseline", "stl", "iwae", "dreg")


def main(args: argparse.Namespace) -> pd.DataFrame:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    splits = prepare("mnist5k", likelihood="bernoulli", data_shape=(784,))
    x = splits.train[: args.batch_size]
    rows = []
    for backend in args.backends:
        vae = ppl_vae.models.build("gaussian_gaussian", backend, seed=0)
        draws = args.draws if backend == "numpyro" else max(2, args.draws // args.pyro_divisor)
        for moments in measure_gradients(vae.model, vae.guide, vae.as_tensor(x),
                                         estimators=args.estimators,
                                         num_particles=args.particles, num_draws=draws,
                                         baseline_warmup=args.baseline_warmup,
                                         chunk_size=args.chunk_size):
            rows.append({"backend": backend, "estimator": moments.estimator,
                         "particles": moments.particles, "draws": moments.num_draws,
                         "draws_per_second": 1.0 / moments.seconds_per_draw})
            print(f"{backend:8s} {moments.estimator:15s} K={moments.particles:<3d} "
                  f"{rows[-1]['draws_per_second']:8.1f} draws/s", flush=True)
    table = pd.DataFrame(rows)
    print(f"\nmachine: {machine_description()}; batch {args.batch_size}")
    print(table.pivot_table(index=["estimator", "particles"], columns="backend",
                            values="draws_per_second", sort=False).round(1).to_string())
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["numpyro", "pyro"],
                        choices=["numpyro", "pyro"])
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument("--particles", type=int, nargs="+", default=[1])
    parser.add_argument("--draws", type=int, default=256, help="NumPyro draws per estimator")
    parser.add_argument("--pyro-divisor", type=int, default=4,
                        help="Pyro takes draws / divisor draws (it is sequential)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, help="NumPyro draws per vmapped chunk")
    parser.add_argument("--baseline-warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
