"""``ppl-vae diagnose RUN_DIR`` end to end on a small digits run (the example script runs in
tests/test_examples.py)."""

import numpy as np
import pandas as pd

import ppl_vae.cli
from ppl_vae.diagnostics import inference_data
from ppl_vae.models import build, load_spec
from ppl_vae.runs import create_run
from ppl_vae.spec import NetworkSpec

CONFIG = {"seed": 0, "data": {"source": "digits", "binarization": "static",
                              "fractions": [0.8, 0.1, 0.1], "seed": 0}}
# The settings and model of examples/diagnose_posterior.py --smoke, so that one of the two
# fills the persistent compilation cache (NUTS, the gap optimizer) for the other.
TINY = ["--num-points", "12", "--num-samples", "100", "--chains", "2", "--warmup", "30",
        "--draws", "40", "--gap-steps", "20", "--gap-samples", "100"]


def small_run(tmp_path, model="gaussian_gaussian", backend="pyro"):
    net = NetworkSpec(hidden=(8,))
    spec = load_spec(model).replace(data_shape=(64,), latent_dim=2, encoder=net, decoder=net)
    vae = build(spec, backend, seed=0)
    path = tmp_path / "run"
    create_run(path, vae, CONFIG)
    pd.DataFrame({"step": [0, 1, 1], "epoch": [0, 0, 0], "split": ["valid", "train", "valid"],
                  "loss": [50.0, 49.0, 48.5], "wall_time": [0.0, 0.1, 0.1]}).to_csv(
        path / "history.csv", index=False)
    return path


def test_diagnose_writes_netcdf_table_and_report(tmp_path, capsys):
    path = small_run(tmp_path)
    assert ppl_vae.cli.main(["diagnose", str(path), "--datapoints", "2", "5", *TINY]) == 0
    assert "MCMC: max R-hat" in capsys.readouterr().out

    idata = inference_data.read_netcdf(path / "diagnostics.nc")
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data",
            "reference_posterior", "reference_sample_stats", "elbo_history"} <= set(
        idata.groups())
    assert idata.posterior["z"].dims == ("chain", "draw", "datapoint", "latent_dim")
    assert idata.posterior["z"].shape == (1, 100, 12, 2)
    assert list(inference_data.reference_part(idata).posterior["datapoint"].values) == [2, 5]
    np.testing.assert_allclose(idata.elbo_history["loss_valid"].values, [50.0, 48.5])
    assert np.isnan(idata.elbo_history["loss_train"].values[0])
    # log_weight is exactly the sum of the stored terms.
    np.testing.assert_allclose(idata.sample_stats["log_weight"],
                               idata.log_likelihood["x"] + idata.sample_stats["log_prior"]
                               - idata.sample_stats["log_q"], rtol=1e-12)

    table = pd.read_csv(path / "diagnostics.csv")
    assert list(table.columns) == ["analysis", "datapoint", "latent_dim", "metric", "value",
                                   "stderr"]
    assert set(table["analysis"]) == {"psis", "mcmc", "guide_vs_mcmc", "gaps", "collapse"}
    assert (table["metric"] == "khat").sum() == 12
    assert set(table.loc[table["analysis"] == "gaps", "datapoint"]) == {2, 5}

    report = (path / "diagnostics.md").read_text()
    for name in ("khat", "trace", "rank", "pair-2", "pair-5", "gaps", "collapse", "history"):
        assert f"figures/diagnostics-{name}.png" in report
        assert (path / "figures" / f"diagnostics-{name}.png").stat().st_size > 0
    assert (path / "diagnostics.html").exists()


def test_diagnose_refuses_bad_input_and_skips_mcmc_for_discrete_gates(tmp_path, capsys):
    assert ppl_vae.cli.main(["diagnose", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    path = small_run(tmp_path, model="masked_laplace")
    assert ppl_vae.cli.main(["diagnose", str(path), "--datapoints", "12", *TINY]) == 2
    assert "--datapoints must be rows in 0..11" in capsys.readouterr().err
    assert ppl_vae.cli.main(["diagnose", str(path), *TINY]) == 0
    assert "MCMC reference and inference gaps skipped" in capsys.readouterr().out
    table = pd.read_csv(path / "diagnostics.csv")
    assert set(table["analysis"]) == {"psis", "collapse"}
