"""The variance study, its report, the ``ppl-vae variance`` command and the example script."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ppl_vae.cli
import ppl_vae.models
from ppl_vae.data import prepare
from ppl_vae.spec import NetworkSpec
from ppl_vae.variance import study
from ppl_vae.variance.study import load_target, run_study, variance_ratios, write_study

ROOT = Path(__file__).resolve().parents[2]

TINY_TOML = """
name = "tiny_gaussian"
latent_dim = 2
data_shape = [64]
kl = "analytic"

[posterior]
family = "gaussian"

[prior]
family = "standard-normal"

[likelihood]
family = "bernoulli"

[encoder]
hidden = [8]

[decoder]
hidden = [8]

[training]
dataset = "digits"
"""


def test_cli_writes_tables_and_report(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    out = tmp_path / "study"
    code = ppl_vae.cli.main(["variance", str(spec), "--estimators", "reparam,score",
                             "--particles", "1,3", "--draws", "12", "--batch-size", "8",
                             "--train-steps", "2", "--out", str(out), "--quiet"])
    assert code == 0
    groups = pd.read_csv(out / "groups.csv")
    assert set(groups["estimator"]) == {"reparam", "score"}
    assert set(groups["particles"]) == {1, 3} and set(groups["group"]) == {"encoder", "decoder"}
    assert (groups["num_draws"] == 12).all() and (groups["stage"] == "init").all()
    ratios = pd.read_csv(out / "ratios.csv")
    # the decoder's gradient does not depend on how the encoder's is estimated: the same z
    # draws give exactly the same decoder gradients under score and reparam
    dec = ratios[(ratios["ratio"] == "score / reparam") & (ratios["group"] == "decoder")]
    np.testing.assert_allclose(dec["variance_ratio"], 1.0, rtol=1e-6)
    training = pd.read_csv(out / "training.csv")
    assert set(training["estimator"]) == {"reparam", "score"}
    assert {"step", "loss", "wall_time"} <= set(training.columns)
    report = (out / "report.md").read_text()
    assert "N = 12" in report and "seed 0" in report and "logical CPUs" in report
    assert "Headline ratios" in report and (out / "report.html").exists()
    assert len(list((out / "figures").glob("*.png"))) == 4


def test_cli_reports_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ppl_vae.cli.main(["variance", "gaussian_gaussian", "--estimators", "reinforce"])
    assert "unknown estimator" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ppl_vae.cli.main(["variance", "gaussian_gaussian", "--particles", "0"])
    assert ppl_vae.cli.main(["variance", str(tmp_path / "nope.toml"), "--quiet"]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_study_of_a_run_uses_its_checkpoints(tmp_path):
    from ppl_vae.training import fit

    spec = ppl_vae.models.load_spec("gaussian_gaussian").replace(
        latent_dim=2, data_shape=(64,), encoder=NetworkSpec(hidden=(8,)),
        decoder=NetworkSpec(hidden=(8,)))
    splits = prepare("digits", likelihood="bernoulli", data_shape=(64,))
    vae = ppl_vae.models.build(spec, "numpyro")
    data_config = {"source": "digits", "binarization": "static", "dequantize": False,
                   "fractions": [0.8, 0.1, 0.1], "seed": 0}
    fit(vae, splits, num_steps=6, batch_size=16, checkpoint_every=2, out_dir=tmp_path / "run",
        progress=False, data_config=data_config)
    target = load_target(tmp_path / "run", batch_size=8)
    steps = [step for _, step, _ in target.stages]
    assert steps[-1] == 6 and len(steps) >= 2 and steps == sorted(steps)
    result = run_study([target], estimators=["reparam", "stl"], particles=[1], num_draws=8)
    assert set(result.groups["step"]) == set(steps)
    assert variance_ratios(result.groups)["ratio"].unique().tolist() == ["stl / reparam"]
    paths = write_study(result, tmp_path / "out")
    assert all(p.exists() for p in paths)
    assert "over training" in (tmp_path / "out" / "report.md").read_text()
    # no training and nothing skipped: the empty tables still carry their header for pandas
    for name, columns in (("training", study.TRAINING_COLUMNS),
                          ("skipped", study.SKIPPED_COLUMNS)):
        empty = pd.read_csv(tmp_path / "out" / f"{name}.csv")
        assert empty.empty and list(empty.columns) == columns


def test_example_runs_in_smoke_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("variance_example",
                                                  ROOT / "examples" / "variance_study.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main(example.parse_args(["--smoke", "--out-dir", str(tmp_path / "ex")]))
    groups = pd.read_csv(out / "groups.csv")
    assert set(groups["target"]) == {"masked_laplace", "masked_relaxed_laplace"}
    skipped = pd.read_csv(out / "skipped.csv")
    # Bernoulli gates cannot be differentiated through: stl is refused there, with the reason
    assert skipped[["target", "estimator"]].values.tolist() == [["masked_laplace", "stl"]]
    assert "Posterior families" in (out / "report.md").read_text()


def test_empty_tables_carry_the_columns_of_full_ones(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_TOML)
    full = run_study([load_target(str(spec), batch_size=8)], estimators=["reparam"],
                     particles=[1], num_draws=4)
    assert list(full.groups.columns) == study.GROUP_COLUMNS
    assert list(full.params.columns) == study.PARAM_COLUMNS
    # a Monte Carlo KL spec refuses the analytic-kl estimator: nothing is measured
    mc = tmp_path / "mc.toml"
    mc.write_text(TINY_TOML.replace('kl = "analytic"', 'kl = "monte-carlo"'))
    nothing = run_study([load_target(str(mc), batch_size=8)], estimators=["analytic-kl"],
                        particles=[1], num_draws=4)
    assert nothing.skipped["estimator"].tolist() == ["analytic-kl"]
    write_study(nothing, tmp_path / "out")
    for name, columns in (("groups", study.GROUP_COLUMNS), ("params", study.PARAM_COLUMNS),
                          ("ratios", study.RATIO_COLUMNS)):
        table = pd.read_csv(tmp_path / "out" / f"{name}.csv")
        assert table.empty and list(table.columns) == columns
