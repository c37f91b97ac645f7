"""Your own data: save it as a .npz, prepare it for a likelihood, fit a zoo model resized to it.

    python examples/own_data.py --num-steps 2000
    python examples/own_data.py --smoke        # seconds

Stands in for "your data" with scikit-learn's bundled 8x8 digits, written as 8-bit integer
images to ``OUT_DIR/my_digits.npz`` (``np.savez(path, x=images, y=labels)``). ``load_npz``
reads the file (integers are taken as 8-bit intensities); ``prepare`` checks it against the
model's ``data_shape``, binarizes it for a Bernoulli likelihood and splits it by seed; the zoo's
standard VAE is resized to 64 pixels and a small code, trained, scored on the test split by
importance sampling, and its samples are drawn to ``OUT_DIR/samples.png``. The command-line
equivalent is ``ppl-vae train SPEC.toml --dataset OUT_DIR/my_digits.npz``.
"""

import argparse
from pathlib import Path

import numpy as np

from ppl_vae.data import load_npz, prepare
from ppl_vae.evaluation import importance_sample
from ppl_vae.models import build, load_spec
from ppl_vae.reports.figures import save_image_grid
from ppl_vae.spec import NetworkSpec
from ppl_vae.training import fit


def write_own_data(path: Path) -> Path:
    """Your data as a .npz: ``x`` (N, 8, 8) uint8 images, ``y`` (N,) integer labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=images, y=digits.target)
    return path


def main(args):
    out = Path(args.out_dir)
    path = write_own_data(out / "my_digits.npz")
    spec = load_spec("gaussian_gaussian").replace(
        data_shape=(8, 8), latent_dim=args.latent_dim,
        encoder=NetworkSpec(hidden=(args.hidden,)), decoder=NetworkSpec(hidden=(args.hidden,)))
    raw = load_npz(path, images_key="x", labels_key="y")  # the labels ride along, for cVAEs
    splits = prepare(raw, likelihood=spec.likelihood.name, data_shape=spec.data_shape,
                     binarization="static", seed=args.seed)
    print(f"{path.name}: {len(splits.train)} train, {len(splits.valid)} valid, "
          f"{len(splits.test)} test images of shape {splits.train.shape[1:]}")
    vae = build(spec, backend=args.backend, seed=args.seed)
    result = fit(vae, splits, num_steps=args.num_steps, batch_size=64, seed=args.seed,
                 out_dir=out / "run", overwrite=True, progress=False)
    print(f"trained {result.num_steps} steps in {result.seconds:.1f} s; kept the parameters "
          f"of step {result.selected_step} (best validation loss)")
    estimate = importance_sample(vae, splits.test, args.num_samples, seed=args.seed)
    print(f"test log p(x), K = {args.num_samples}: {estimate.log_likelihood.mean():.2f} nats "
          f"per image (ELBO {estimate.elbo.mean():.2f})")
    save_image_grid(out / "samples.png", np.asarray(vae.sample(64, seed=args.seed)), (8, 8),
                    scale=4)
    print(f"wrote {out / 'samples.png'}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="importance samples per test image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="runs/own-data")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_steps, args.latent_dim, args.hidden, args.num_samples = 5, 2, 8, 10
    return args


if __name__ == "__main__":
    main(parse_args())
