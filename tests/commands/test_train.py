"""``ppl-vae train`` and ``ppl-vae sample`` end to end, in-process."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ppl_vae import data as data_module
from ppl_vae.cli import main
from ppl_vae.runs import load_run

SPEC = """
name = "tiny"
latent_dim = 2
data_shape = [8, 8]
kl = "analytic"
[posterior]
family = "gaussian"
[prior]
family = "standard-normal"
[likelihood]
family = "bernoulli"
[encoder]
hidden = [16]
[decoder]
hidden = [16]
[training]
estimator = "reparam"
dataset = "digits"
num_steps = 12
batch_size = 32
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(SPEC))
    return path


def test_train_then_sample(spec_file, tmp_path, capsys):
    out = tmp_path / "runs" / "tiny"
    assert main(["train", str(spec_file), "--out", str(out), "--checkpoint-every", "6"]) == 0
    printed = capsys.readouterr().out
    assert "trained 12 steps" in printed and "validation ELBO" in printed
    for name in ("spec.toml", "run.json", "params.safetensors", "history.csv",
                 "training_curves.png", "checkpoints/latest", "checkpoints/step-00000006"):
        assert (out / name).exists(), name
    history = pd.read_csv(out / "history.csv")
    assert history.query("split == 'train'")["step"].tolist() == list(range(1, 13))
    run = load_run(out)
    assert run.config["training"]["batch_size"] == 32 and run.config["data"]["source"] == "digits"

    assert main(["sample", str(out), "--num-samples", "16"]) == 0
    assert {p.split("/")[-1] for p in capsys.readouterr().out.split()} == {
        "samples.png", "reconstructions.png", "latents.csv", "traversals.png",
        "interpolations.png"}
    # 16 samples of 8x8 in a 4x4 grid, 2-pixel gaps, drawn at twice the size
    with Image.open(out / "samples.png") as image:
        assert image.size == (2 * (4 * 10 + 2),) * 2
    # the reconstructions grid shows the test images themselves in its first row: cell k of
    # row 0 holds test image k, drawn dark on light as round((1 - x) * 255)
    with Image.open(out / "reconstructions.png") as image:
        grid = np.asarray(image)[::2, ::2]
    test = data_module.prepare("digits", likelihood="bernoulli").test
    for k in range(8):
        cell = grid[2:10, 2 + 10 * k:10 + 10 * k]
        np.testing.assert_array_equal(cell, np.round((1 - test[k].reshape(8, 8)) * 255))


def test_resume_overwrite_and_errors(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(spec_file), "--out", str(out), "--quiet"]) == 0
    assert main(["train", str(spec_file), "--out", str(out), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", str(spec_file), "--out", str(out), "--quiet", "--resume",
                 "--steps", "20"]) == 0
    steps = pd.read_csv(out / "history.csv").query("split == 'train'")["step"]
    assert steps.tolist() == list(range(1, 21))
    assert main(["train", str(spec_file), "--out", str(out), "--quiet", "--resume",
                 "--lr", "0.01", "--steps", "30"]) == 2
    assert "learning_rate was 0.001, now 0.01" in capsys.readouterr().err
    assert main(["train", str(spec_file), "--out", str(out), "--quiet", "--overwrite",
                 "--epochs", "1"]) == 0
    steps = pd.read_csv(out / "history.csv").query("split == 'train'")["step"]
    assert steps.max() == len(data_module.prepare("digits", likelihood="bernoulli").train) // 32
    assert main(["train", str(spec_file), "--out", str(tmp_path / "gpu"), "--device",
                 "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # the choices come from the registry
        main(["train", str(spec_file), "--out", str(tmp_path / "x"), "--estimator", "reinforce"])
    assert exit_.value.code == 2 and "invalid choice: 'reinforce'" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_numpyro_backend_from_the_command_line(spec_file, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(spec_file), "--backend", "numpyro", "--out", str(out),
                 "--quiet"]) == 0
    assert load_run(out).config["backend"] == "numpyro"
    assert main(["sample", str(out), "--num-samples", "4", "--num-reconstructions", "8"]) == 0
    assert (out / "samples.png").exists() and (out / "reconstructions.png").exists()


@pytest.mark.slow
def test_two_trainings_into_one_folder_the_second_is_refused_and_a_killed_one_taken_over(
        spec_file, tmp_path):
    """Real processes: B is refused at once naming A's PID while A trains; after A is killed
    with SIGKILL, C takes the stale lock over and writes a coherent run."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import ppl_vae
    from ppl_vae.runs.writer import HOLDER_FILE, writer_home

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(ppl_vae.__file__).parents[1])}
    cli = [sys.executable, "-m", "ppl_vae.cli", "train", str(spec_file), "--out", str(out),
           "--quiet"]
    a = subprocess.Popen([*cli, "--steps", "100000", "--checkpoint-every", "20"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "run.json").exists():  # A's first checkpoint is in place
            assert a.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        assert (writer_home(out) / HOLDER_FILE).exists()
        b = subprocess.run([*cli, "--overwrite", "--seed", "2"], env=env, capture_output=True,
                           text=True, timeout=240)
        assert b.returncode == 2
        assert b.stderr.count("\n") == 1 and f"being written by process {a.pid} " in b.stderr
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=60)
    c = subprocess.run([*cli, "--overwrite", "--seed", "2", "--steps", "4"], env=env,
                       capture_output=True, text=True, timeout=240)
    assert c.returncode == 0, c.stderr
    assert json.loads((out / "run.json").read_text())["seed"] == 2
    assert load_run(out).config["training"]["num_steps"] == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest",
                                                                       "step-00000004"]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_conditional_vae_trains_and_evaluates_log_p_x_given_c(backend, tmp_path, capsys):
    path = tmp_path / "cvae.toml"
    path.write_text(textwrap.dedent(SPEC).replace('name = "tiny"', 'name = "tiny_cvae"')
                    .replace('family = "standard-normal"', 'family = "learned-normal"')
                    + "[condition]\nclasses = 10\nprior = \"learned\"\n")
    out = tmp_path / "cvae"
    assert main(["train", str(path), "--backend", backend, "--out", str(out)]) == 0
    run = load_run(out)
    data = run.evaluation_data(max_points=30)
    np.testing.assert_array_equal(data.c, run.splits().test_labels[:30])
    assert run.vae.get_params()["prior.loc"].shape == (10, 2)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--num-samples", "20", "--num-points", "30",
                 "--model-samples", "10"]) == 0
    assert "log p(x | c)" in capsys.readouterr().out
    metrics = pd.read_csv(out / "metrics.csv").set_index("metric")["value"]
    assert np.isfinite(metrics["log_likelihood_is"]) and np.isfinite(metrics["elbo"])
    assert -64 * np.log(2) < metrics["log_likelihood_is"] < 0  # 64 binary pixels
    assert metrics["log_likelihood_is"] >= metrics["elbo"] - 1.0
