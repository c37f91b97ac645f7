"""The seeds' question: which posterior × prior fits MNIST-5k best, by how many nats?

    python examples/compare_posteriors.py --num-steps 2000 --seeds 3 --num-samples 5000

Trains Gaussian/Gaussian, Gaussian/Laplace, none/Laplace (latent optimization),
Laplace/Laplace and masked code/Laplace with each seed on the same split and budget, on a
local process pool (one thread per worker), evaluates them on the test split and writes the
table, the summary (mean ± se over seeds), the paired per-datapoint log p(x) differences
against Gaussian/Gaussian and the comparison report to ``--out-dir``. The same as
``ppl-vae compare gaussian_gaussian gaussian_laplace latent_laplace laplace_laplace
masked_laplace --seeds 3 --steps N``; re-running resumes where a killed run stopped.
"""

import argparse
import time

from ppl_vae.compare import LocalPool, plan, run_grid, write_grid
from ppl_vae.models import load_spec
from ppl_vae.reports.pages import summary_wide
from ppl_vae.spec import NetworkSpec

MODELS = ("gaussian_gaussian", "gaussian_laplace", "latent_laplace", "laplace_laplace",
          "masked_laplace")


def main(args):
    specs = [load_spec(name) for name in MODELS]
    dataset = "mnist5k"
    if args.smoke:  # tiny networks on scikit-learn's 8x8 digits, for the test suite
        specs = [s.replace(data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
                           decoder=NetworkSpec(hidden=(8,))) for s in specs[:2]]
        dataset = "digits"
    cells = plan(specs, range(args.seeds), dataset=dataset, num_steps=args.num_steps,
                 num_samples=args.num_samples, eval_points=args.num_points,
                 backend=args.backend)
    start = time.perf_counter()
    result = run_grid(cells, args.out_dir, LocalPool(args.workers), progress=print)
    result.settings |= {"wall_seconds": time.perf_counter() - start, "executor": "local"}
    write_grid(result, args.out_dir, cells=cells)
    print(summary_wide(result.summary, marker="*").to_markdown(index=False))
    print(result.paired.to_markdown(index=False, floatfmt=".3f"))
    print(f"{len(cells)} cells in {result.settings['wall_seconds']:.0f} s; report: "
          f"{args.out_dir}/report.html")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="importance samples per test image")
    parser.add_argument("--num-points", type=int, default=None,
                        help="first N test images (default: all 500)")
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--out-dir", default="compare-posteriors")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_steps, args.seeds, args.num_samples, args.num_points = 5, 1, 20, 16
        args.workers = 1
    return args


if __name__ == "__main__":
    main(parse_args())
