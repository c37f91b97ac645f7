"""Did the variational posterior work? Train a small VAE, then diagnose its guide.

Trains a VAE on scikit-learn's 8x8 digits (bundled, nothing is downloaded), then runs
``ppl-vae diagnose`` on the run directory: PSIS k-hat of the importance weights per test
datapoint, NUTS reference posteriors with R-hat/ESS for a few datapoints, compared with
the guide, the approximation and amortization gaps, and posterior collapse. The report
lands in OUT_DIR/diagnostics.html.

    python examples/diagnose_posterior.py --backend numpyro --num-steps 3000
    python examples/diagnose_posterior.py --smoke        # seconds: tiny everything
"""

from __future__ import annotations

import argparse
from pathlib import Path

DATA = {"source": "digits", "binarization": "static", "fractions": [0.8, 0.1, 0.1], "seed": 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--model", default="gaussian_gaussian", help="zoo model name")
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64, help="encoder/decoder hidden units")
    parser.add_argument("--num-steps", type=int, default=3000, help="SVI steps")
    parser.add_argument("--datapoints", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="test rows given an MCMC reference and inference gaps")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/diagnose-example"))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in --out-dir")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model, few steps and draws (for tests)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> Path:
    import ppl_vae.cli
    from ppl_vae.data import prepare
    from ppl_vae.models import build, load_spec
    from ppl_vae.spec import NetworkSpec
    from ppl_vae.training import fit

    if args.smoke:
        args.latent_dim, args.hidden, args.num_steps = 2, 8, 20
        args.datapoints, args.chains, args.draws = args.datapoints[:2], 2, 40
    net = NetworkSpec(hidden=(args.hidden,))
    spec = load_spec(args.model).replace(data_shape=(64,), latent_dim=args.latent_dim,
                                         encoder=net, decoder=net)
    splits = prepare(DATA["source"], likelihood=spec.likelihood.name,
                     binarization=DATA["binarization"], fractions=tuple(DATA["fractions"]),
                     seed=DATA["seed"])
    vae = build(spec, args.backend, seed=args.seed)
    result = fit(vae, splits, num_steps=args.num_steps, seed=args.seed, out_dir=args.out_dir,
                 overwrite=args.overwrite, progress=not args.smoke, data_config=DATA)
    valid = result.history[result.history["split"] == "valid"]
    print(f"trained {result.num_steps} steps; validation loss {valid['loss'].iloc[-1]:.2f} "
          f"nats -> {args.out_dir}")

    tiny = ["--num-points", "12", "--num-samples", "100", "--warmup", "30",
            "--gap-steps", "20", "--gap-samples", "100"] if args.smoke else []
    ppl_vae.cli.main(["diagnose", str(args.out_dir), "--datapoints",
                      *map(str, args.datapoints), "--chains", str(args.chains),
                      "--draws", str(args.draws), "--seed", str(args.seed), *tiny])
    return args.out_dir / "diagnostics.html"


if __name__ == "__main__":
    print(f"report: {main(parse_args())}")
