"""ArviZ conversion: named dimensions, groups, the ELBO history and netCDF round trips."""

import numpy as np
import pandas as pd
import pytest

from ppl_vae.diagnostics import inference_data

S, B, D, LATENT = 30, 3, 5, 2


def guide(rng):
    terms = {k: rng.normal(size=(S, B)) for k in ("log_likelihood", "log_prior", "log_q")}
    return inference_data.guide_inference_data({"z": rng.normal(size=(S, B, LATENT))},
                                              datapoints=[7, 8, 9], log_terms=terms,
                                              observed=rng.normal(size=(B, D))), terms


def test_guide_groups_dims_and_log_weight():
    idata, terms = guide(np.random.default_rng(0))
    assert idata.posterior["z"].dims == ("chain", "draw", "datapoint", "latent_dim")
    assert idata.observed_data["x"].dims == ("datapoint", "data_dim")
    assert list(idata.posterior["datapoint"].values) == [7, 8, 9]
    np.testing.assert_array_equal(idata.sample_stats["log_weight"].values[0],
                                  terms["log_likelihood"] + terms["log_prior"] - terms["log_q"])
    np.testing.assert_array_equal(idata.log_likelihood["x"].values[0], terms["log_likelihood"])


def test_combined_object_round_trips_through_netcdf(tmp_path):
    rng = np.random.default_rng(1)
    idata, _ = guide(rng)
    reference = inference_data.mcmc_inference_data(
        {"z": rng.normal(size=(4, 20, 2, LATENT))}, datapoints=[7, 9],
        sample_stats={"diverging": np.zeros((4, 20), bool)})
    history = pd.DataFrame({"step": [0, 10, 10, 20], "epoch": 0,
                            "split": ["valid", "train", "valid", "train"],
                            "loss": [9.0, 8.0, 7.5, 7.0]})
    combined = inference_data.combine(idata, reference=reference, history=history)
    path = inference_data.write_netcdf(combined, tmp_path / "d.nc")
    back = inference_data.read_netcdf(path)
    assert set(back.groups()) == set(combined.groups())
    np.testing.assert_array_equal(back.posterior["z"], combined.posterior["z"])
    ref = inference_data.reference_part(back)
    np.testing.assert_array_equal(ref.posterior["z"], reference.posterior["z"])
    assert list(ref.posterior["datapoint"].values) == [7, 9]
    hist = back.elbo_history
    assert list(hist["step"].values) == [0, 10, 20]
    np.testing.assert_array_equal(hist["loss_train"].values, [np.nan, 8.0, 7.0])
    np.testing.assert_array_equal(hist["loss_valid"].values, [9.0, 7.5, np.nan])
    # Writing again replaces the file (loaded eagerly, so no handle keeps it open).
    inference_data.write_netcdf(back, path)


def test_bad_shapes_and_missing_reference_are_reported():
    with pytest.raises(ValueError, match=r"\(K, B, latent_dim\)"):
        inference_data.guide_inference_data({"z": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="one label per datapoint"):
        inference_data.guide_inference_data({"z": np.zeros((4, 3, 2))}, datapoints=[1, 2])
    with pytest.raises(ValueError, match=r"\(chains, draws, B, latent_dim\)"):
        inference_data.mcmc_inference_data({"z": np.zeros((4, 3, 2))})
    idata, _ = guide(np.random.default_rng(2))
    with pytest.raises(ValueError, match="no MCMC reference"):
        inference_data.reference_part(idata)


def test_history_without_split_or_step_uses_rows():
    ds = inference_data.history_dataset(pd.DataFrame({"elbo": [-3.0, -2.0], "name": ["a", "b"]}))
    assert list(ds["step"].values) == [0, 1]
    assert list(ds.data_vars) == ["elbo"]
