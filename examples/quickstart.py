"""Quickstart: train the standard VAE on MNIST-5k with either backend, then draw from it.

    python examples/quickstart.py --backend pyro --num-epochs 30
    python examples/quickstart.py --backend numpyro --num-epochs 30

Writes the run directory (spec, parameters, history, checkpoints) plus ``samples.png`` and
``reconstructions.png`` to ``--out-dir``. The program is the same for both backends.
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

import ppl_vae.data
import ppl_vae.models
from ppl_vae.reports.figures import interleave_rows, save_image_grid
from ppl_vae.training import fit


def main(args):
    splits = ppl_vae.data.prepare("mnist5k", likelihood="bernoulli")
    if args.smoke:  # a quick pass for the test suite
        splits = dataclasses.replace(splits, train=splits.train[:1024])
    vae = ppl_vae.models.build("gaussian_gaussian", backend=args.backend, seed=args.seed)
    result = fit(vae, splits, num_epochs=args.num_epochs, batch_size=args.batch_size,
                 estimator="reparam", seed=args.seed, out_dir=args.out_dir,
                 overwrite=args.overwrite, progress=not args.smoke)
    valid = result.history.query("split == 'valid'")["loss"]
    print(f"{args.backend}: validation ELBO {-valid.iloc[0]:.1f} -> {-valid.iloc[-1]:.1f} nats per "
          f"image after {result.num_steps} steps ({result.seconds:.1f} s)")

    out = Path(args.out_dir)
    save_image_grid(out / "samples.png", np.asarray(vae.sample(64, seed=args.seed)), (28, 28))
    x = splits.test[:32]
    pairs = interleave_rows(x, np.asarray(vae.reconstruct(x)), num_columns=8)
    save_image_grid(out / "reconstructions.png", pairs, (28, 28), num_columns=8)
    print(f"wrote {out / 'samples.png'} and {out / 'reconstructions.png'}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--num-epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", help="run directory (default runs/quickstart-BACKEND)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in --out-dir")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    args.out_dir = args.out_dir or f"runs/quickstart-{args.backend}"
    if args.smoke:
        args.num_epochs, args.batch_size = 1, 64
    return args


if __name__ == "__main__":
    main(parse_args())
