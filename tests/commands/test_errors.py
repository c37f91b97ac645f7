"""Every sub-command, fed bad input, ends in one line ``ppl-vae COMMAND: error: ...`` naming the
problem, exit code 2, no traceback, and no file of a run changed (in-process through
:func:`ppl_vae.cli.main`); ``--debug`` shows the traceback. Also: ``evaluate`` warns about an
unfinished run, the zoo's ``linear_gaussian`` trains from the command line, and unwritable
outputs are clear errors."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import textwrap

import numpy as np
import pytest

from ppl_vae import io, runs
from ppl_vae.cli import main
from ppl_vae.commands import train as train_command
from ppl_vae.training import loop
from tests.commands.test_train import SPEC
from tests.conftest import folder_bytes

ONE_LINE = re.compile(r"ppl-vae( [a-z]+)?: error: \S.*")


def run_cli(argv, capsys):
    """Exit code and stderr of ``ppl-vae ARGV``, in-process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny spec and a run trained for 4 of 4 steps from it, shared by the cases."""
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.toml").write_text(textwrap.dedent(SPEC))
    assert main(["train", str(root / "tiny.toml"), "--out", str(root / "run"), "--quiet",
                 "--steps", "4", "--checkpoint-every", "2"]) == 0
    return root


def spec_with(old, new):
    def setup(root, tmp):
        text = (root / "tiny.toml").read_text()
        assert old in text
        (tmp / "bad.toml").write_text(text.replace(old, new, 1))
        return tmp / "bad.toml"
    return setup


def write_bytes(name, data):
    def setup(root, tmp):
        (tmp / name).write_bytes(data)
        return tmp / name
    return setup


def npz(damage):
    def setup(root, tmp):
        np.savez(tmp / "ok.npz", x=np.zeros((20, 64), np.float32))
        np.savez_compressed(tmp / "okc.npz", x=np.zeros((20, 64), np.float32))
        blob = bytearray((tmp / ("okc.npz" if damage == "deflate" else "ok.npz")).read_bytes())
        if damage == "truncated":
            blob = blob[:len(blob) // 2]
        elif damage == "crc":
            blob[200:240] = b"\xff" * 40
        else:
            blob[60:100] = b"\x00" * 40
        (tmp / "bad.npz").write_bytes(bytes(blob))
        return tmp / "bad.npz"
    return setup


def folder_with_files(root, tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "history.csv").write_text("the user's own\n")
    return tmp / "mine"


def a_file(root, tmp):
    (tmp / "file.txt").write_text("x")
    return tmp / "file.txt"


def damaged_run(damage):
    """A copy of the shared run with ``damage(path)`` applied."""
    def setup(root, tmp):
        copy = tmp / "copy"
        shutil.copytree(root / "run", copy)
        damage(copy)
        return copy
    return setup


def _write(name, text):
    return lambda run: (run / name).write_text(text)


def _other_params(run):
    shutil.rmtree(run / runs.CHECKPOINT_DIR)  # else: not the parameters latest committed
    (run / runs.PARAMS_FILE).unlink()
    io.save_arrays(run / runs.PARAMS_FILE, {"encoder.0.weight": np.zeros((3, 3), np.float32)})


NO_CHECKPOINTS = damaged_run(lambda run: shutil.rmtree(run / runs.CHECKPOINT_DIR))


def _edit_config(**changes):
    """A damage: run.json with ``changes`` merged in (a value of ``...`` drops the key)."""
    def damage(run):
        config = json.loads((run / runs.CONFIG_FILE).read_text())
        config.update(changes)
        (run / runs.CONFIG_FILE).write_text(json.dumps(config))
    return damage


def _nan_params(run):
    """NaN parameters in a run without checkpoints (nothing records what they should be)."""
    params = io.load_arrays(run / runs.PARAMS_FILE)
    params = {name: np.full_like(value, np.nan) for name, value in params.items()}
    shutil.rmtree(run / runs.CHECKPOINT_DIR)
    io.save_arrays(run / runs.PARAMS_FILE, params)


def _earlier_params(run):
    """params.safetensors of the checkpoint before ``latest``: another step than it records."""
    shutil.copy(run / runs.CHECKPOINT_DIR / "step-00000002" / runs.PARAMS_FILE,
                run / runs.PARAMS_FILE)


def _crafted_state(run):
    """A checkpoint whose state.json lacks the engine's optimizer state, its manifest
    rewritten to match (a crafted, not a torn, file)."""
    latest = run / runs.CHECKPOINT_DIR / "step-00000004"
    state = json.loads((latest / "state.json").read_text())
    del state["engine"]["optim"]
    (latest / "state.json").write_text(json.dumps(state))
    manifest = json.loads((latest / "manifest.json").read_text())
    manifest["state.json"] = hashlib.sha256((latest / "state.json").read_bytes()).hexdigest()
    (latest / "manifest.json").write_text(json.dumps(manifest))


def symlinked_checkpoints(root, tmp):
    """A copy of the run whose checkpoints/ is a link to a user's folder of plans."""
    copy = tmp / "copy"
    shutil.copytree(root / "run", copy)
    user = tmp / "user"
    shutil.move(copy / runs.CHECKPOINT_DIR, user)
    (user / "step-by-step").mkdir()
    (user / "step-by-step" / "plan.txt").write_text("the user's plan\n")
    (copy / runs.CHECKPOINT_DIR).symlink_to(user)
    return tmp


def users_folder(*names):
    """A folder of the user's own files with the names a command writes."""
    def setup(root, tmp):
        (tmp / "mine").mkdir()
        for name in names:
            (tmp / "mine" / name).write_text(f"the user's own {name}\n")
        return tmp / "mine"
    return setup


def beside_a_foreign_folder(root, tmp):
    """tmp holding a user's folder: a refused --out must not leave a sibling either."""
    folder_with_files(root, tmp)
    return tmp


_TRAINERS = []  # writers held for the rest of the session, each on its own copy of the run


def trained_right_now(root, tmp):
    """A copy of the run whose lock a trainer (this process) holds."""
    copy = damaged_run(lambda run: None)(root, tmp)
    _TRAINERS.append(runs.RunWriter(copy).__enter__())
    return copy


def symlinked_out(root, tmp):
    (tmp / "real").mkdir()
    (tmp / "link").symlink_to(tmp / "real")
    return tmp
IDX_EMPTY = b"\x00\x00\x08\x03" + struct.pack(">3I", 0, 8, 8)

# (id, argv with {spec} {run} {tmp} {x} placeholders, words the message must hold, setup of {x})
CASES = [
    ("no command", [], "required", None),
    ("unknown command", ["bogus"], "invalid choice", None),
    # train: specs
    ("spec is a folder", ["train", "{tmp}"], "is a folder", None),
    ("spec not UTF-8", ["train", "{x}"], "not a UTF-8 text file",
     write_bytes("bad.toml", b'name = "\xff\xfe"\n')),
    ("spec not TOML", ["train", "{x}"], "not valid TOML", write_bytes("bad.toml", b"[[[")),
    ("missing spec file", ["train", "{tmp}/none.toml"], "no such spec file", None),
    ("unknown zoo model", ["train", "nosuch"], "neither a spec file nor a zoo model", None),
    ("latent_dim = true", ["train", "{x}"], "latent_dim must be an integer >= 1",
     spec_with("latent_dim = 2", "latent_dim = true")),
    ("hidden = [true]", ["train", "{x}"], "hidden must be a list of positive integers",
     spec_with("hidden = [16]", "hidden = [true]")),
    ("scale_floor = inf", ["train", "{x}"], "scale_floor = inf: every number in a spec must be",
     spec_with('kl = "analytic"', 'kl = "analytic"\nscale_floor = inf')),
    ("scale_floor = 0", ["train", "{x}"], "scale_floor must be a finite number > 0",
     spec_with('kl = "analytic"', 'kl = "analytic"\nscale_floor = 0.0')),
    ("spec learning_rate = inf", ["train", "{x}"], "training.learning_rate = inf",
     spec_with("batch_size = 32", "batch_size = 32\nlearning_rate = inf")),
    ("spec binarization", ["train", "{x}"], "binarization must be one of",
     spec_with("batch_size = 32", 'batch_size = 32\nbinarization = "half"')),
    ("spec name ../../escaped", ["train", "{x}"], "is used as a folder name",
     spec_with('name = "tiny"', 'name = "../../escaped"')),
    ("spec name /abs/path", ["train", "{x}"], "give a plain name",
     spec_with('name = "tiny"', 'name = "/abs/path"')),
    ("spec name ..", ["train", "{x}"], "is a relative folder",
     spec_with('name = "tiny"', 'name = ".."')),
    ("spec name empty", ["train", "{x}"], "name must be a non-empty string",
     spec_with('name = "tiny"', 'name = ""')),
    ("spec num_steps abc", ["train", "{x}"], "bad.toml: [training] num_steps must be an integer",
     spec_with("num_steps = 12", 'num_steps = "abc"')),
    ("spec latent_dim 10**9", ["train", "{x}", "--out", "{tmp}/o"], "more than the",
     spec_with("latent_dim = 2", "latent_dim = 1000000000")),
    ("spec hidden [10**9]", ["train", "{x}", "--out", "{tmp}/o"], "needs at least",
     spec_with("hidden = [16]", "hidden = [1000000000]")),
    ("--binarization on 8-bit", ["train", "{x}", "--binarization", "static"],
     "--binarization static applies to binary data",
     spec_with('family = "bernoulli"', 'family = "categorical"')),
    # train: arguments
    ("--particles 10**8", ["train", "{spec}", "--out", "{tmp}/o", "--particles", "100000000"],
     "--particles 100000000 with batch size 32", None),
    ("--lr inf", ["train", "{spec}", "--lr", "inf"], "must be a finite number > 0", None),
    ("--lr nan", ["train", "{spec}", "--lr", "nan"], "must be a finite number > 0", None),
    ("--lr 0", ["train", "{spec}", "--lr", "0"], "must be a finite number > 0", None),
    ("--lr -1", ["train", "{spec}", "--lr=-1"], "must be a finite number > 0", None),
    ("--lr abc", ["train", "{spec}", "--lr", "abc"], "must be a number", None),
    ("--lr 1e38", ["train", "{spec}", "--out", "{tmp}/o", "--lr", "1e38"],
     "overflows float32 in Adam's first step", None),
    ("--steps 0", ["train", "{spec}", "--steps", "0"], "must be a positive integer", None),
    ("--steps abc", ["train", "{spec}", "--steps", "abc"], "invalid positive_int value", None),
    ("--batch-size 0", ["train", "{spec}", "--batch-size", "0"], "positive integer", None),
    ("--seed -1", ["train", "{spec}", "--seed=-1"], "must be an integer >= 0", None),
    ("--divergence-factor 0", ["train", "{spec}", "--divergence-factor", "0"],
     "must be a finite number > 0", None),
    ("--steps and --epochs", ["train", "{spec}", "--steps", "2", "--epochs", "1"],
     "not allowed with", None),
    ("--estimator", ["train", "{spec}", "--out", "{tmp}/o", "--estimator", "reinforce"],
     "invalid choice: 'reinforce'", None),
    ("--batch-size too big", ["train", "{spec}", "--out", "{tmp}/o", "--batch-size", "99999"],
     "batch", None),
    # train: data
    ("npz truncated", ["train", "{spec}", "--dataset", "{x}"], "corrupt or truncated .npz",
     npz("truncated")),
    ("npz bad CRC", ["train", "{spec}", "--dataset", "{x}"], "corrupt or truncated .npz",
     npz("crc")),
    ("npz bad deflate", ["train", "{spec}", "--dataset", "{x}"], "corrupt or truncated .npz",
     npz("deflate")),
    ("npz not a zip", ["train", "{spec}", "--dataset", "{x}"], "is not a .npz archive",
     write_bytes("bad.npz", b"hello world")),
    ("IDX with 0 images", ["train", "{spec}", "--dataset", "{x}"], "declares 0 items",
     write_bytes("e-images-idx3-ubyte", IDX_EMPTY)),
    ("IDX truncated", ["train", "{spec}", "--dataset", "{x}"], "truncated or corrupt",
     write_bytes("t-images-idx3-ubyte", IDX_EMPTY[:4] + struct.pack(">3I", 5, 8, 8) + b"\0")),
    ("dataset missing", ["train", "{spec}", "--dataset", "{tmp}/none.npz"], "unknown dataset",
     None),
    ("dataset wrong shape", ["train", "{spec}", "--dataset", "mnist5k"], "values per datapoint",
     None),
    # train: run folders
    ("exists", ["train", "{spec}", "--out", "{run}"], "already holds a run", None),
    ("--out foreign folder", ["train", "{spec}", "--out", "{x}"], "not a ppl_vae run",
     folder_with_files),
    ("--out foreign folder, no sibling", ["train", "{spec}", "--out", "{x}/mine"],
     "nothing was touched", beside_a_foreign_folder),
    ("--out a file", ["train", "{spec}", "--out", "{x}"], "is a file", a_file),
    ("--out under a file", ["train", "{spec}", "--out", "{x}/run"], "not a directory", a_file),
    ("--out /", ["train", "{spec}", "--out", "/"], "is the filesystem root", None),
    ("--out a symlink", ["train", "{spec}", "--out", "{x}/link"], "is a symbolic link to",
     symlinked_out),
    ("--resume checkpoints a symlink", ["train", "{spec}", "--out", "{x}/copy", "--resume",
                                        "--steps", "8"], "checkpoints is a symbolic link",
     symlinked_checkpoints),
    ("--resume crafted state.json", ["train", "{spec}", "--out", "{x}", "--resume", "--steps",
                                     "8"], "state.json has no entry 'optim'",
     damaged_run(_crafted_state)),
    ("--resume nothing there", ["train", "{spec}", "--out", "{tmp}/o", "--resume"],
     "nothing to resume", None),
    ("--resume no checkpoint", ["train", "{spec}", "--out", "{x}", "--resume", "--steps", "8"],
     "cannot resume", NO_CHECKPOINTS),
    ("--resume other settings", ["train", "{spec}", "--out", "{run}", "--resume", "--lr", "0.1"],
     "learning_rate was 0.001, now 0.1", None),
    ("--resume --overwrite", ["train", "{spec}", "--out", "{run}", "--resume", "--overwrite"],
     "contradict", None),
    ("--resume fewer steps", ["train", "{spec}", "--out", "{run}", "--resume", "--steps", "2"],
     "beyond num_steps=2", None),
    ("diverges", ["train", "{spec}", "--out", "{tmp}/o", "--quiet", "--lr", "1e4"],
     "diverged at step", None),
    # evaluate
    ("evaluate missing", ["evaluate", "{tmp}/none"], "no such run directory", None),
    ("evaluate not a run", ["evaluate", "{x}"], "not a ppl_vae run directory",
     folder_with_files),
    ("evaluate a file", ["evaluate", "{x}"], "is a file", a_file),
    ("evaluate corrupt run.json", ["evaluate", "{x}"], "not valid JSON",
     damaged_run(_write(runs.CONFIG_FILE, "{"))),
    ("evaluate run.json no backend", ["evaluate", "{x}"], "not a run record",
     damaged_run(_write(runs.CONFIG_FILE, '{"seed": 0}'))),
    ("evaluate run.json a list", ["evaluate", "{x}"], "not a run record",
     damaged_run(_write(runs.CONFIG_FILE, "[1, 2]"))),
    ("evaluate run.json []", ["evaluate", "{x}"], "not a run record",
     damaged_run(_write(runs.CONFIG_FILE, "[]"))),
    ("evaluate run.json data a string", ["evaluate", "{x}"], '"data" must be a JSON object',
     damaged_run(_edit_config(data="mnist5k"))),
    ("evaluate run.json training a list", ["evaluate", "{x}"],
     '"training" must be a JSON object', damaged_run(_edit_config(training=[1, 2]))),
    ("evaluate run.json num_steps abc", ["evaluate", "{x}"],
     '"num_steps" must be an integer', damaged_run(_edit_config(training={"num_steps": "abc"}))),
    ("evaluate NaN params", ["evaluate", "{x}"], "hold NaN or infinite values",
     damaged_run(_nan_params)),
    ("evaluate params of another step", ["evaluate", "{x}"],
     "is not the one checkpoint step-00000004 committed", damaged_run(_earlier_params)),
    ("evaluate corrupt spec", ["evaluate", "{x}"], "not valid TOML",
     damaged_run(_write(runs.SPEC_FILE, "latent_dim = = 3"))),
    ("evaluate spec missing", ["evaluate", "{x}"], "no such spec file",
     damaged_run(lambda run: (run / runs.SPEC_FILE).unlink())),
    ("evaluate corrupt params", ["evaluate", "{x}"], "not a readable safetensors file",
     damaged_run(_write(runs.PARAMS_FILE, "not safetensors"))),
    ("evaluate params missing", ["evaluate", "{x}"], "file not found",
     damaged_run(lambda run: (run / runs.PARAMS_FILE).unlink())),
    ("evaluate params of another model", ["evaluate", "{x}"], "does not fit",
     damaged_run(_other_params)),
    ("evaluate while training", ["evaluate", "{x}"], "is being trained", trained_right_now),
    ("evaluate --ais -1", ["evaluate", "{run}", "--ais=-1"], "must be an integer >= 0", None),
    ("evaluate --split", ["evaluate", "{run}", "--split", "holdout"], "invalid choice", None),
    ("evaluate --num-samples 0", ["evaluate", "{run}", "--num-samples", "0"], "positive", None),
    ("evaluate foreign metrics.csv", ["evaluate", "{x}", "--num-samples", "2",
                                      "--model-samples", "0"], "has columns",
     damaged_run(_write(runs.METRICS_FILE, "a,b\n1,2\n"))),
    # sample
    ("sample missing", ["sample", "{tmp}/none"], "no such run directory", None),
    ("sample --num-reconstructions 7", ["sample", "{run}", "--num-reconstructions", "7"],
     "multiple of 8", None),
    ("sample --num-samples 0", ["sample", "{run}", "--num-samples", "0"], "positive", None),
    ("sample --out under a file", ["sample", "{run}", "--out", "{x}/png"], "not a directory",
     a_file),
    ("sample --out a user's folder", ["sample", "{run}", "--out", "{x}", "--num-samples", "4"],
     "holds 2 file(s) ppl-vae did not write (latents.csv, samples.png)",
     users_folder("samples.png", "latents.csv")),
    ("sample while training", ["sample", "{x}"], "is being trained", trained_right_now),
    ("sample corrupt params", ["sample", "{x}"], "not a readable safetensors file",
     damaged_run(_write(runs.PARAMS_FILE, "x"))),
    # report
    ("report missing", ["report", "{tmp}/none"], "no such run directory", None),
    ("report not a run", ["report", "{x}"], "not a ppl_vae run directory", folder_with_files),
    ("report corrupt spec", ["report", "{x}"], "not valid TOML",
     damaged_run(_write(runs.SPEC_FILE, "[[["))),
    ("report corrupt run.json", ["report", "{x}"], "not valid JSON",
     damaged_run(_write(runs.CONFIG_FILE, "{"))),
    ("report run.json data a string", ["report", "{x}"], '"data" must be a JSON object',
     damaged_run(_edit_config(data="mnist5k"))),
    ("report run.json training a list", ["report", "{x}"], '"training" must be a JSON object',
     damaged_run(_edit_config(training=[1, 2]))),
    ("report empty metrics.csv", ["report", "{x}"], "metrics.csv is empty",
     damaged_run(_write(runs.METRICS_FILE, ""))),
    # variance
    ("variance --draws 1", ["variance", "{run}", "--draws", "1"], "--draws must be >= 2", None),
    ("variance missing target", ["variance", "{tmp}/none"], "neither a spec file nor", None),
    ("variance --estimators", ["variance", "{run}", "--estimators", "bogus"],
     "unknown estimator", None),
    ("variance --particles 0", ["variance", "{run}", "--particles", "0"], "integers >= 1", None),
    ("variance --out a user's folder", ["variance", "{run}", "--out", "{x}", "--draws", "2"],
     "holds 2 file(s) ppl-vae did not write (params.csv, report.html)",
     users_folder("report.html", "params.csv")),
    ("variance while training", ["variance", "{x}", "--draws", "2"], "is being trained",
     trained_right_now),
    ("diagnose while training", ["diagnose", "{x}"], "is being trained", trained_right_now),
    ("report while training", ["report", "{x}"], "is being trained", trained_right_now),
    ("variance --particles 10**8", ["variance", "{run}", "--particles", "100000000",
                                    "--batch-size", "8"], "--particles 100000000 with batch",
     None),
    ("variance corrupt params", ["variance", "{x}", "--draws", "2"], "not a readable",
     damaged_run(_write(runs.PARAMS_FILE, "x"))),
    # diagnose
    ("diagnose missing", ["diagnose", "{tmp}/none"], "no such run directory", None),
    ("diagnose --datapoints", ["diagnose", "{run}", "--datapoints", "99", "--num-points", "4"],
     "--datapoints must be rows in 0..3", None),
    ("diagnose corrupt run.json", ["diagnose", "{x}"], "not valid JSON",
     damaged_run(_write(runs.CONFIG_FILE, "{"))),
]


@pytest.mark.parametrize("argv, words, setup", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_with_exit_code_2(argv, words, setup, root, tmp_path,
                                                      capsys):
    shared = folder_bytes(root / "run")
    x = setup(root, tmp_path) if setup else None
    touched = folder_bytes(x) if x is not None and x.is_dir() else None
    values = {"spec": root / "tiny.toml", "run": root / "run", "tmp": tmp_path, "x": x}
    code, err = run_cli([a.format(**values) for a in argv], capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ONE_LINE.fullmatch(lines[0]), err
    assert words in lines[0]
    assert folder_bytes(root / "run") == shared  # nothing of the run changed
    if touched is not None:
        assert folder_bytes(x) == touched


def test_debug_shows_the_traceback(root, tmp_path):
    with pytest.raises(runs.NotARunError, match="no such run directory"):
        main(["evaluate", str(tmp_path / "none"), "--debug"])
    with pytest.raises(runs.NotARunError):
        main(["--debug", "report", str(tmp_path / "none")])


def test_unwritable_outputs_are_clear_errors(root, capsys, monkeypatch):
    """As root a read-only folder is still writable, so the refusal is simulated where every
    write starts: the temporary file of the atomic write."""
    before = folder_bytes(root / "run")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    for argv in (["evaluate", root / "run", "--num-samples", "2", "--model-samples", "0"],
                 ["sample", root / "run", "--num-samples", "4"],
                 ["report", root / "run"],
                 ["train", root / "tiny.toml", "--out", root / "other", "--quiet"]):
        code, err = run_cli(argv, capsys)
        assert code == 2 and "Traceback" not in err, err
        assert ": permission denied; make it writable or choose another output folder" in err
        assert len(err.strip().splitlines()) == 1
    monkeypatch.undo()
    assert folder_bytes(root / "run") == before


def test_a_full_disk_names_the_file_and_the_fix(root, tmp_path, capsys, monkeypatch):
    """ENOSPC comes from the write or the fsync, with no file name of its own."""
    copy = tmp_path / "copy"
    shutil.copytree(root / "run", copy)
    (copy / runs.METRICS_FILE).unlink(missing_ok=True)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    code, err = run_cli(["evaluate", copy, "--num-samples", "2", "--model-samples", "0"],
                        capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (f"{copy / runs.METRICS_FILE}: no space left on device; the disk is full; free "
            "space or choose another output folder") in err
    assert not (copy / runs.METRICS_FILE).exists()
    assert not [p for p in copy.iterdir() if p.name.endswith(".tmp")]  # no temporary left


def test_evaluating_an_unfinished_run_warns_with_its_step(root, tmp_path, capsys,
                                                          monkeypatch):
    out = tmp_path / "run"
    original = loop.save

    def save_then_stop(engine, run_dir, step, *args):
        path = original(engine, run_dir, step, *args)
        if step == 8:
            raise KeyboardInterrupt  # Ctrl-C right after the checkpoint of step 8
        return path

    monkeypatch.setattr(loop, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        main(["train", str(root / "tiny.toml"), "--out", str(out), "--quiet",
              "--checkpoint-every", "4"])
    monkeypatch.undo()
    for argv in (["evaluate", out, "--num-samples", "2", "--model-samples", "0"],
                 ["sample", out, "--num-samples", "4"], ["report", out],
                 ["variance", out, "--draws", "2", "--particles", "1", "--estimators",
                  "reparam", "--batch-size", "8", "--quiet"]):
        code, err = run_cli(argv, capsys)
        assert code == 0, err
        assert f"warning: {out} has trained 8 of its 12 steps" in err and "--resume" in err
    code, err = run_cli(["evaluate", root / "run", "--num-samples", "2", "--model-samples",
                         "0", "--num-points", "4"], capsys)
    assert code == 0 and "warning" not in err  # a finished run says nothing


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_zoo_linear_gaussian_trains_from_the_command_line(backend, tmp_path, capsys):
    out = tmp_path / "lg"
    code, err = run_cli(["train", "linear_gaussian", "--backend", backend, "--out", out,
                         "--steps", "2", "--batch-size", "16", "--quiet"], capsys)
    assert code == 0, err
    config = json.loads((out / runs.CONFIG_FILE).read_text())
    assert config["data"]["binarization"] == "none"
    assert runs.load_run(out).splits().train.max() <= 1.0  # grey levels in [0, 1], kept


def test_the_commands_default_divergence_factor_is_the_trainings():
    assert train_command.DIVERGENCE_FACTOR == loop.DIVERGENCE_FACTOR
