"""Tests for :mod:`ppl_vae.runs`: the run-directory contract and the one policy that rebuilds a
run's evaluation data for every command."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vae import runs
from ppl_vae.cli import main
from ppl_vae.data import binarize_static, prepare
from ppl_vae.models import build, load_spec
from ppl_vae.runs import CheckpointError
from ppl_vae.spec import NetworkSpec

DATA = {"source": "digits", "binarization": "static", "fractions": [0.8, 0.1, 0.1], "seed": 0,
        "shuffle": True}


def _digits(binarization="static"):
    return prepare("digits", likelihood="bernoulli", binarization=binarization)


def _encoder_free_run(tmp_path):
    spec = load_spec("latent_laplace").replace(data_shape=(64,), latent_dim=2,
                                               decoder=NetworkSpec(hidden=(8,)))
    num_data = len(_digits().train)
    vae = build(spec, "pyro", num_data=num_data)
    return runs.create_run(tmp_path / "glo", vae, {"seed": 0, "num_data": num_data,
                                                   "data": DATA})


def _amortized_run(tmp_path, binarization="static"):
    spec = load_spec("gaussian_gaussian").replace(
        data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
        decoder=NetworkSpec(hidden=(8,)))
    return runs.create_run(tmp_path / f"vae-{binarization}", build(spec, "numpyro"),
                           {"seed": 0, "data": {**DATA, "binarization": binarization}})


def test_encoder_free_runs_default_to_the_training_split_with_its_code_indices(tmp_path):
    run = runs.load_run(_encoder_free_run(tmp_path))
    train = run.evaluation_data(max_points=10)
    assert train.split == "train" and train.notes == []
    np.testing.assert_array_equal(train.idx, np.arange(10))
    np.testing.assert_array_equal(train.x, _digits().train[:10])
    held_out = run.evaluation_data("test")
    assert held_out.idx is None and "no stored codes" in held_out.notes[0]
    np.testing.assert_array_equal(held_out.x, _digits().test)


def test_runs_recorded_before_splits_were_shuffled_rebuild_their_sorted_splits(tmp_path):
    old = {key: value for key, value in DATA.items() if key != "shuffle"}
    spec = load_spec("gaussian_gaussian").replace(
        data_shape=(64,), latent_dim=2, encoder=NetworkSpec(hidden=(8,)),
        decoder=NetworkSpec(hidden=(8,)))
    path = runs.create_run(tmp_path / "old", build(spec, "numpyro"), {"seed": 0, "data": old})
    data = runs.load_run(path).evaluation_data()
    sorted_ = prepare("digits", likelihood="bernoulli", shuffle=False)
    np.testing.assert_array_equal(data.x, sorted_.test)
    np.testing.assert_array_equal(data.splits.indices["test"],
                                  np.sort(_digits().indices["test"]))


def test_amortized_runs_default_to_the_test_split_without_indices(tmp_path):
    data = runs.load_run(_amortized_run(tmp_path)).evaluation_data(max_points=5)
    assert data.split == "test" and data.idx is None and data.x.shape == (5, 64)
    np.testing.assert_array_equal(data.x, _digits().test[:5])
    np.testing.assert_array_equal(data.valid, _digits().valid)


def test_dynamically_binarized_runs_are_evaluated_on_one_static_binarization(tmp_path):
    data = runs.load_run(_amortized_run(tmp_path, "dynamic")).evaluation_data(seed=3)
    grey = _digits("dynamic")
    np.testing.assert_array_equal(data.x, binarize_static(grey.test, 3))
    np.testing.assert_array_equal(data.train, binarize_static(grey.train, 3))
    assert "static binarization (seed 3)" in data.notes[0]


def test_unknown_split_and_missing_data_settings_are_refused(tmp_path):
    run = runs.load_run(_amortized_run(tmp_path))
    with pytest.raises(ValueError, match="split must be one of train, valid, test"):
        run.evaluation_data("holdout")
    bare = runs.create_run(tmp_path / "bare", run.vae, {"seed": 0}, overwrite=False)
    with pytest.raises(CheckpointError, match="records no 'data' settings"):
        runs.load_run(bare).evaluation_data()


def test_sample_reconstructs_an_encoder_free_run_from_its_stored_codes(tmp_path, capsys):
    path = _encoder_free_run(tmp_path)
    assert main(["sample", str(path), "--num-samples", "4", "--num-reconstructions", "8"]) == 0
    assert (path / runs.RECONSTRUCTIONS_FILE).is_file()
    assert main(["sample", str(path), "--split", "test"]) == 2
    assert "use --split train" in capsys.readouterr().err


def test_is_run_looks_for_the_config_file(tmp_path):
    assert not runs.is_run(tmp_path)
    assert runs.is_run(_amortized_run(tmp_path))
