"""Labelled data from the command line: a ``.npz`` file (named arrays) and an image folder
with one sub-folder per class train a conditional VAE and evaluate it given the labels, the
choice of arrays recorded in run.json for every later job."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from PIL import Image

from ppl_vae.cli import main
from ppl_vae.data import prepare
from ppl_vae.runs import load_run
from tests.commands.test_train import SPEC

CLASSES = 3


@pytest.fixture(scope="module")
def labelled():
    """60 of scikit-learn's 8x8 digits of the classes 0..2, as 8-bit images, and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = np.flatnonzero(bunch.target < CLASSES)[:60]
    images = np.round(bunch.images[keep] * 255 / 16).astype(np.uint8)
    return images, bunch.target[keep].astype(np.int64)


def cvae_spec(tmp_path):
    path = tmp_path / "cvae.toml"
    path.write_text(textwrap.dedent(SPEC).replace('family = "standard-normal"',
                                                  'family = "learned-normal"')
                    + f"[condition]\nclasses = {CLASSES}\nprior = \"learned\"\n")
    return path


def train_and_evaluate(tmp_path, capsys, *data_flags):
    out = tmp_path / "run"
    assert main(["train", str(cvae_spec(tmp_path)), *data_flags, "--steps", "2",
                 "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    # evaluate rebuilds the labelled splits from run.json alone: no data flags again
    assert main(["evaluate", str(out), "--num-samples", "4", "--model-samples", "0",
                 "--quiet"]) == 0
    assert "log p(x | c)" in capsys.readouterr().out
    return load_run(out)


def test_a_labelled_npz_with_named_arrays_trains_and_evaluates(labelled, tmp_path, capsys):
    images, labels = labelled
    path = tmp_path / "mine.npz"
    np.savez(path, pixels=images, classes=labels, other=np.zeros(3))
    run = train_and_evaluate(tmp_path, capsys, "--dataset", str(path), "--images-key",
                             "pixels", "--labels-key", "classes")
    assert run.config["data"] | {"images_key": "pixels", "labels_key": "classes"} \
        == run.config["data"]
    # the same splits as the arrays themselves with their labels, through the API
    splits = run.splits()
    expected = prepare(images, labels=labels, likelihood="bernoulli",
                       shuffle=run.config["data"].get("shuffle", False))
    for name in ("train", "test"):
        np.testing.assert_array_equal(getattr(splits, name), getattr(expected, name))
        np.testing.assert_array_equal(getattr(splits, f"{name}_labels"),
                                      getattr(expected, f"{name}_labels"))


def test_an_npz_with_arrays_named_images_and_labels_needs_no_flags(labelled, tmp_path, capsys):
    images, labels = labelled
    path = tmp_path / "plain.npz"
    np.savez(path, images=images, labels=labels)
    run = train_and_evaluate(tmp_path, capsys, "--dataset", str(path))
    assert "images_key" not in run.config["data"]
    assert sorted(np.unique(run.splits().train_labels)) == list(range(CLASSES))


def test_an_image_folder_with_class_subfolders_is_labelled_data(labelled, tmp_path, capsys):
    images, labels = labelled
    root = tmp_path / "folder"
    names = ("zero", "one", "two")  # sorted: one, two, zero -> labels 0, 1, 2
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / names[label] / f"{n:03d}.png")
    run = train_and_evaluate(tmp_path, capsys, "--dataset", str(root))
    splits = run.splits()
    found = np.concatenate([splits.train_labels, splits.valid_labels, splits.test_labels])
    folder_label = {name: k for k, name in enumerate(sorted(names))}
    expected = np.array([folder_label[names[label]] for label in labels])
    np.testing.assert_array_equal(np.bincount(found), np.bincount(expected))


def test_npz_keys_on_a_file_that_is_not_npz_are_one_clear_error(tmp_path, capsys):
    code = main(["train", str(cvae_spec(tmp_path)), "--dataset", "digits", "--images-key",
                 "x", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--images-key / --labels-key" in err and "'digits' is not one" in err


def test_dataset_flags_of_a_run_command_replace_the_recorded_source(labelled, tmp_path,
                                                                    capsys):
    images, labels = labelled
    path = tmp_path / "first.npz"
    np.savez(path, pixels=images, classes=labels)
    run = train_and_evaluate(tmp_path, capsys, "--dataset", str(path), "--images-key",
                             "pixels", "--labels-key", "classes")
    moved = path.rename(tmp_path / "moved.npz")
    argv = ["evaluate", str(run.path), "--num-samples", "4", "--model-samples", "0", "--quiet"]
    assert main(argv) == 2
    assert "first.npz" in capsys.readouterr().err
    assert main([*argv, "--dataset", str(moved)]) == 0  # the recorded keys still apply
    assert "log p(x | c)" in capsys.readouterr().out
    assert load_run(run.path).config["data"]["source"] == str(path)  # run.json unchanged
