"""Conditional VAE: train the zoo's ``cvae_mnist`` on MNIST-5k with its labels, draw each digit.

    python examples/conditional_vae.py --backend pyro --num-epochs 30
    python examples/conditional_vae.py --backend numpyro --num-epochs 30
    python examples/conditional_vae.py --smoke        # seconds

``cvae_mnist`` reads the label c in the encoder, q(z | x, c), and the decoder, p(x | z, c),
and learns a Gaussian prior p(z | c) per class. ``prepare("mnist5k", ...)`` returns the labels
with each split and ``fit`` passes them on; the bounds are on log p(x | c), so the scores are
computed with ``c=`` the labels of the scored images. ``samples.png`` in ``--out-dir`` holds
decoder means E[x | z, c] with z ~ p(z | c): one column per class 0..9, one row per draw.
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

import ppl_vae.data
import ppl_vae.models
from ppl_vae.evaluation import importance_sample
from ppl_vae.reports.figures import save_image_grid
from ppl_vae.training import fit

CLASSES = 10


def main(args):
    splits = ppl_vae.data.prepare("mnist5k", likelihood="bernoulli", seed=args.seed)
    if args.smoke:  # a quick pass for the test suite
        splits = dataclasses.replace(splits, train=splits.train[:512],
                                     train_labels=splits.train_labels[:512])
    print(f"mnist5k: {len(splits.train)} train, {len(splits.valid)} valid, "
          f"{len(splits.test)} test images with labels 0..{CLASSES - 1}")
    vae = ppl_vae.models.build("cvae_mnist", backend=args.backend, seed=args.seed)
    result = fit(vae, splits, num_epochs=args.num_epochs, batch_size=args.batch_size,
                 seed=args.seed, out_dir=Path(args.out_dir) / "run", overwrite=True,
                 progress=False)
    print(f"{args.backend}: trained {result.num_steps} steps in {result.seconds:.1f} s; kept "
          f"the parameters of step {result.selected_step} (best validation loss)")

    for name, x, c in (("valid", splits.valid, splits.valid_labels),
                       ("test", splits.test, splits.test_labels)):
        estimate = importance_sample(vae, x, args.num_samples, seed=args.seed, c=c)
        print(f"{name} log p(x | c), K = {args.num_samples}: "
              f"{estimate.log_likelihood.mean():.2f} nats per image "
              f"(ELBO {estimate.elbo.mean():.2f})")

    # The labels 0, 1, ..., 9, 0, 1, ... fill the rows of a 10-column grid: column k is class k.
    labels = np.tile(np.arange(CLASSES), args.rows)
    samples = np.asarray(vae.sample(len(labels), seed=args.seed, c=labels))
    out = Path(args.out_dir)
    save_image_grid(out / "samples.png", samples, (28, 28), num_columns=CLASSES)
    print(f"wrote {out / 'samples.png'}: {args.rows} samples of each digit, one column per class")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--num-epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="importance samples per scored image")
    parser.add_argument("--rows", type=int, default=6, help="samples per class in the figure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="runs/conditional")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_epochs, args.batch_size, args.num_samples, args.rows = 1, 64, 10, 2
    return args


if __name__ == "__main__":
    main(parse_args())
