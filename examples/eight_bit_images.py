"""8-bit pixels and conv nets: train ``conv_gaussian_dlogistic`` on MNIST-5k as stored, 0..255.

    python examples/eight_bit_images.py --num-steps 3000
    python examples/eight_bit_images.py --smoke        # seconds

The zoo's ``conv_gaussian_dlogistic`` has a conv encoder, a transposed-conv decoder and a
discretized mixture of 5 logistics per pixel (PixelCNN++): an exact probability of each integer
pixel value, so log p(x) of the 8-bit test images converts to bits/dim with no dequantization
offset (``ppl_vae.evaluation.likelihood_units`` states the convention). Writes the run
and ``samples.png`` (decoder means of draws from the prior) to ``--out-dir``.
"""

import argparse
from pathlib import Path

import numpy as np

import ppl_vae.data
import ppl_vae.models
from ppl_vae.evaluation import importance_sample, likelihood_units
from ppl_vae.reports.figures import display_range, save_image_grid
from ppl_vae.training import fit


def main(args):
    vae = ppl_vae.models.build("conv_gaussian_dlogistic", backend=args.backend, seed=args.seed)
    spec = vae.spec
    splits = ppl_vae.data.prepare("mnist5k", likelihood=spec.likelihood.name,
                                  data_shape=spec.data_shape, seed=args.seed)
    if args.smoke:  # a quick pass for the test suite
        splits = splits.__class__(**{**vars(splits), "train": splits.train[:256],
                                     "test": splits.test[:20]})
    print(f"mnist5k, 8-bit: {len(splits.train)} train images of {spec.data_shape}, integer "
          f"values {splits.train.min():.0f}..{splits.train.max():.0f}")
    result = fit(vae, splits, num_steps=args.num_steps, batch_size=args.batch_size,
                 seed=args.seed, out_dir=Path(args.out_dir) / "run", overwrite=True,
                 progress=False)
    print(f"{args.backend}: trained {result.num_steps} steps in {result.seconds:.1f} s; kept "
          f"the parameters of step {result.selected_step} (best validation loss)")

    units = likelihood_units(spec.likelihood, spec.data_dim)
    estimate = importance_sample(vae, splits.test, args.num_samples, seed=args.seed)
    log_px = estimate.log_likelihood
    print(f"test log p(x), K = {args.num_samples}: {log_px.mean():.1f} nats per image, "
          f"{units.bits_per_dim(log_px).mean():.3f} bits/dim "
          f"(ELBO: {units.bits_per_dim(estimate.elbo).mean():.3f} bits/dim)")
    print(f"units: {units.note}")

    # decoder means on the data's 0..255 scale, drawn on that scale (the likelihood's range)
    means = np.asarray(vae.sample(64, seed=args.seed))
    out = Path(args.out_dir)
    save_image_grid(out / "samples.png", means, spec.data_shape, num_columns=8,
                    value_range=display_range(spec.likelihood.data_range))
    print(f"wrote {out / 'samples.png'}: decoder means of 64 draws z ~ p(z), drawn on 0..255")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="importance samples per test image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="runs/eight-bit")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_steps, args.batch_size, args.num_samples = 3, 16, 4
    return args


if __name__ == "__main__":
    main(parse_args())
