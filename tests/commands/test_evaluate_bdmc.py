"""``ppl-vae evaluate --bdmc`` end to end, in-process: bdmc.csv, its note, the run report's
section, and bad input refused before anything is written."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from ppl_vae.cli import main
from ppl_vae.evaluation import BDMC_COLUMNS
from tests.commands.test_train import SPEC


def test_evaluate_bdmc_writes_the_bounds_and_the_report_shows_them(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(textwrap.dedent(SPEC))
    run_dir = tmp_path / "run"
    assert main(["train", str(tmp_path / "tiny.toml"), "--backend", "numpyro", "--out",
                 str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--num-samples", "10", "--max-points", "10",
                 "--model-samples", "0", "--bdmc", "--bdmc-points", "6",
                 "--bdmc-temperatures", "20,5", "--bdmc-samples", "10,50"]) == 0
    out = capsys.readouterr().out
    assert "BDMC on simulated data, T = 20" in out and "K = 50" in out
    table = pd.read_csv(run_dir / "bdmc.csv")
    assert list(table.columns) == BDMC_COLUMNS
    sizes = {q: sorted(rows["size"]) for q, rows in table.groupby("quantity")}
    assert sizes == {"lower": [5, 20], "upper": [5, 20], "gap": [5, 20], "is": [10, 50],
                     "upper_minus_is": [10, 50]}
    by = table.set_index(["quantity", "size"])["mean"]
    assert by[("gap", 20)] == pytest.approx(by[("upper", 20)] - by[("lower", 20)])
    assert by[("upper_minus_is", 50)] == pytest.approx(by[("upper", 20)] - by[("is", 50)])
    assert np.all(np.isfinite(table["mean"]))
    assert main(["report", str(run_dir)]) == 0
    md = (run_dir / "report.md").read_text()
    assert "## How loose is log p(x)? (BDMC on simulated data)" in md
    assert "likely loose by up to about" in md and "upper_minus_is" in md
    metrics = pd.read_csv(run_dir / "metrics.csv").set_index("metric")["value"]
    assert (f"The test-set IS figure: log p(x) = {metrics['log_likelihood_is']:.4g}" in md
            and "with K = 10." in md)


@pytest.mark.parametrize(("flags", "message"), [
    (["--bdmc-temperatures", "0,100"], "must be positive integers"),
    (["--bdmc-samples", "10,many"], "must be comma-separated positive integers"),
])
def test_evaluate_bdmc_refuses_bad_sizes(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(tmp_path), "--bdmc", *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_bdmc_on_a_model_without_it_writes_nothing(tmp_path, capsys):
    spec = (textwrap.dedent(SPEC).replace('family = "standard-normal"', 'family = "flow"')
            .replace('kl = "analytic"', 'kl = "monte-carlo"'))
    (tmp_path / "flow.toml").write_text(spec)
    run_dir = tmp_path / "run"
    assert main(["train", str(tmp_path / "flow.toml"), "--backend", "numpyro", "--steps", "2",
                 "--out", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--bdmc", "--num-samples", "2"]) == 2
    err = capsys.readouterr().err
    assert "ppl-vae evaluate: error: BDMC anneals from the prior" in err
    assert not (run_dir / "metrics.csv").exists() and not (run_dir / "bdmc.csv").exists()
