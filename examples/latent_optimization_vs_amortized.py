"""Per-datapoint codes against an encoder, on the same decoder: what does amortization cost?

    python examples/latent_optimization_vs_amortized.py --num-steps 2000 --num-points 100

Trains the standard VAE (Gaussian encoder, N(0, I) prior) on MNIST-5k, then, with its decoder
and prior fixed, optimizes a Gaussian q(z) for each of ``--num-points`` test images on its
own (latent optimization, as an encoder-free model does for its training points; Adam from
the encoder's output, ppl_vae.diagnostics.gaps). For both posteriors it reports the ELBO,
the importance-sampled log p(x) with that posterior as proposal, and the seconds spent on
inference; the difference of the ELBOs is the amortization gap (Cremer et al. 2018).
Writes ``comparison.csv`` and ``report.md`` / ``report.html`` to ``--out-dir``.
"""

import argparse
import time
from pathlib import Path

import pandas as pd

import ppl_vae.data
import ppl_vae.models
from ppl_vae.diagnostics.gaps import inference_gaps
from ppl_vae.evaluation import importance_sample
from ppl_vae.reports import Report
from ppl_vae.spec import NetworkSpec
from ppl_vae.training import fit


def main(args):
    out = Path(args.out_dir)
    spec = ppl_vae.models.load_spec("gaussian_gaussian")
    dataset = "mnist5k"
    if args.smoke:
        spec = spec.replace(data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
                            decoder=NetworkSpec(hidden=(8,)))
        dataset = "digits"
    splits = ppl_vae.data.prepare(dataset, likelihood="bernoulli", data_shape=spec.data_shape)
    vae = ppl_vae.models.build(spec, backend=args.backend, seed=args.seed)
    fit(vae, splits, num_steps=args.num_steps, seed=args.seed, out_dir=out / "run",
        overwrite=True, progress=not args.smoke)
    x = splits.test[:args.num_points]  # shuffled split: a sample of all digits

    start = time.perf_counter()
    amortized = importance_sample(vae, x, args.num_samples, seed=args.seed)
    amortized_seconds = time.perf_counter() - start
    start = time.perf_counter()
    gaps = inference_gaps(vae, x, num_steps=args.optimization_steps,
                          num_eval_samples=args.num_samples,
                          num_likelihood_samples=args.num_samples, seed=args.seed)
    optimized_seconds = time.perf_counter() - start
    optimized = importance_sample(vae, x, args.num_samples, seed=args.seed,
                                  encoder_output=gaps.optimized)
    table = pd.DataFrame({
        "posterior": ["amortized (encoder)", "per-datapoint (optimized)"],
        "elbo": [gaps.table["elbo_amortized"].mean(), gaps.table["elbo_optimized"].mean()],
        "log_px_is": [amortized.log_likelihood.mean(), optimized.log_likelihood.mean()],
        "inference_seconds": [amortized_seconds, optimized_seconds],
    })
    gap = gaps.table["gap_amortization"]
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(f"amortization gap: {gap.mean():.3f} ± {gap.std(ddof=1) / len(gap) ** 0.5:.3f} nats "
          f"per image over {len(gap)} test images (> 0: the encoder leaves ELBO on the table)")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    report = Report("Latent optimization against amortized inference")
    report.text(f"{spec.name} trained {args.num_steps} steps on {dataset}; {len(x)} test "
                f"images; K = {args.num_samples}; {args.optimization_steps} Adam steps per "
                "image for the optimized codes (seconds include that optimization, the "
                "amortized ones an encoder pass and the importance sampling).")
    report.table(table, caption="means over the test images, nats")
    report.table(gaps.table, caption="per image (ppl_vae.diagnostics.inference_gaps)")
    report.write(out, "report")
    return table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--num-steps", type=int, default=2000, help="training steps")
    parser.add_argument("--num-points", type=int, default=100, help="test images")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--optimization-steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="latent-vs-amortized")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_steps, args.num_points, args.num_samples = 5, 8, 50
        args.optimization_steps = 20
    return args


if __name__ == "__main__":
    main(parse_args())
