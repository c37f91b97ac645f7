"""Long jobs say what they do: variance prints its cost before it starts and names the
target, stage and step of every line; evaluate, diagnose and variance draw progress bars
(tqdm, with the time left) on a terminal, and none into a log."""

from __future__ import annotations

import sys
import textwrap

import numpy as np

from ppl_vae.cli import main
from ppl_vae.evaluation import importance_sample
from tests.commands.test_diagnose import TINY, small_run
from tests.commands.test_train import SPEC


def pretend_terminal(monkeypatch):
    """Make the captured stderr say it is a terminal, as tqdm asks (in the test's body:
    capsys replaces sys.stderr only when the test itself starts)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def test_variance_prints_its_cost_first_and_names_the_stage_of_each_line(tmp_path, capsys,
                                                                         monkeypatch):
    pretend_terminal(monkeypatch)
    (tmp_path / "tiny.toml").write_text(textwrap.dedent(SPEC))
    assert main(["variance", str(tmp_path / "tiny.toml"), "--estimators", "reparam,vimco",
                 "--particles", "1,3", "--draws", "4", "--batch-size", "8",
                 "--out", str(tmp_path / "var")]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    # 1 stage x 2 estimators x (K = 1 and 3) x 4 draws; particles weighed: 2 x (1 + 3) x 4
    assert lines[0] == ("variance: 1 stage (tiny: init (step 0)) × 2 estimators × K = 1, 3 = "
                        "4 configurations × 4 draws = 16 gradient draws of 32 particles")
    measured = [line for line in lines if "draws/s" in line]
    assert [line.split(": ")[1] for line in measured] == [
        "numpyro reparam K=1", "numpyro reparam K=3", "numpyro vimco K=3"]
    assert all(line.startswith("tiny init (step 0): ") for line in measured)
    # the bar: vimco is refused at K = 1, so its 4 draws leave the total (16 -> 12)
    assert "tiny init (step 0)" in captured.err and "12/12" in captured.err
    assert "vimco K=3" in captured.err


def test_the_importance_sampler_draws_a_bar_on_a_terminal_only(capsys, monkeypatch):
    from ppl_vae.models import build, load_spec
    from ppl_vae.spec import NetworkSpec

    net = NetworkSpec(hidden=(4,))
    spec = load_spec("gaussian_gaussian").replace(data_shape=(6,), latent_dim=2, encoder=net,
                                                  decoder=net)
    vae = build(spec, "numpyro", seed=0)
    x = (np.random.default_rng(0).random((5, 6)) < 0.5).astype(np.float32)
    plain = importance_sample(vae, x, 10, progress=True).log_likelihood
    assert capsys.readouterr().err == ""  # not a terminal: no bar in the log
    pretend_terminal(monkeypatch)
    shown = importance_sample(vae, x, 10, progress=True).log_likelihood
    err = capsys.readouterr().err
    assert "importance sampling, K = 10" in err and "/5 [" in err and "datapoint/s" in err
    np.testing.assert_array_equal(shown, plain)  # the bar changes nothing drawn


def test_diagnose_shows_its_stages(tmp_path, capsys, monkeypatch):
    pretend_terminal(monkeypatch)
    path = small_run(tmp_path)
    assert main(["diagnose", str(path), "--datapoints", "2", *TINY]) == 0
    err = capsys.readouterr().err
    for stage in ("importance weights and PSIS k-hat", "MCMC reference of 1 datapoints",
                  "inference gaps of 1 datapoints (20 steps)", "posterior collapse",
                  "4/4 stages done"):
        assert stage in err
    assert main(["diagnose", str(path), "--datapoints", "2", *TINY, "--quiet"]) == 0
    assert "stages done" not in capsys.readouterr().err
