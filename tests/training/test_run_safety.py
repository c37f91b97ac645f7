"""``fit(out_dir=...)`` never loses a run a user trained (both backends where training runs):
resume without a checkpoint refuses, overwrite is a transaction, a second writer and foreign
folders are refused, extending a finished run adds no duplicate row, and torn checkpoint
folders are cleaned. Where data could be lost, the run folder is compared byte for byte."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import ppl_vae.models
from ppl_vae import data as data_module
from ppl_vae import runs
from ppl_vae.families import Gaussian
from ppl_vae.runs import CheckpointError, RunLockedError, RunWriter, writer_home
from ppl_vae.runs import checkpoints as checkpoint
from ppl_vae.spec import NetworkSpec
from ppl_vae.training import DivergenceError, NonFiniteLossError, fit, loop
from tests.conftest import folder_bytes

BACKENDS = ("pyro", "numpyro")
OLD_RESULTS = (runs.METRICS_FILE, runs.SAMPLES_FILE, runs.DIAGNOSTICS_TABLE,
               f"{runs.VARIANCE_DIR}/{runs.VARIANCE_RATIOS}")


def tiny_spec(**changes):
    small = {"data_shape": (64,), "latent_dim": 2, "encoder": NetworkSpec(hidden=(8,)),
             "decoder": NetworkSpec(hidden=(8,))}
    return ppl_vae.models.load_spec("gaussian_gaussian").replace(**{**small, **changes})


@pytest.fixture(scope="module")
def digits():
    return data_module.prepare("digits", likelihood="bernoulli")


def train(backend, data, out, *, seed=0, spec=None, **kwargs):
    kwargs.setdefault("num_steps", 6)
    kwargs.setdefault("checkpoint_every", 3)
    return fit(ppl_vae.models.build(spec or tiny_spec(), backend, seed=seed), data,
               batch_size=32, estimator="reparam", seed=seed, out_dir=out, progress=False,
               **kwargs)


def trained_run_with_results(backend, digits, out):
    """A finished 6-step run plus the files later jobs add (metrics, PNGs, tables)."""
    train(backend, digits, out)
    for name in OLD_RESULTS:
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_text(f"computed from the old parameters: {name}\n")
    return folder_bytes(out)


def assert_no_writer_leftovers(out):
    assert sorted(p.name for p in writer_home(out).iterdir()) == ["lock"]


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("damage", ["checkpoints deleted", "every manifest missing"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_without_a_loadable_checkpoint_refuses_and_changes_nothing(backend, damage,
                                                                         digits, tmp_path):
    out = tmp_path / "run"
    train(backend, digits, out)
    if damage == "checkpoints deleted":
        shutil.rmtree(out / runs.CHECKPOINT_DIR)
    else:
        for manifest in (out / runs.CHECKPOINT_DIR).glob(f"step-*/{checkpoint.MANIFEST_FILE}"):
            manifest.unlink()
    before = folder_bytes(out)
    with pytest.raises(CheckpointError, match=r"cannot resume .* nothing was changed\. .*"
                                              r"--overwrite"):
        train(backend, digits, out, num_steps=12, resume=True)
    assert folder_bytes(out) == before
    assert_no_writer_leftovers(out)


# --------------------------------------------------------------------------- overwrite


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_overwrite_that_fails_leaves_the_old_run_byte_for_byte(backend, digits, tmp_path):
    out = tmp_path / "run"
    before = trained_run_with_results(backend, digits, out)
    # a finite blow-up (lr 1e4: ~1e20 nats at step 2) before the first checkpoint
    with pytest.raises(DivergenceError, match="run folder is as it was before"):
        train(backend, digits, out, seed=1, learning_rate=1e4, num_steps=20,
              checkpoint_every=10, overwrite=True)
    assert folder_bytes(out) == before
    assert_no_writer_leftovers(out)
    if backend == "numpyro":  # the NaN's way out of the loop is the same on both backends
        return
    # a NaN (an overflowing value in every row), from another spec on other data
    x = np.random.default_rng(1).random((40, 8)).astype(np.float32)
    x[:, 3] = 3e38
    gaussian = tiny_spec(data_shape=(8,), likelihood=Gaussian(), kl="monte-carlo")
    with pytest.raises(NonFiniteLossError):
        train(backend, x, out, spec=gaussian, num_steps=20, checkpoint_every=10,
              overwrite=True)
    assert folder_bytes(out) == before
    assert_no_writer_leftovers(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_overwrite_swaps_in_at_its_first_checkpoint_without_the_old_results(
        backend, digits, tmp_path, monkeypatch):
    out = tmp_path / "run"
    before = trained_run_with_results(backend, digits, out)
    seen = []
    original = loop.save

    def save(engine, run_dir, step, *args):
        seen.append((step, run_dir, folder_bytes(out) == before))
        return original(engine, run_dir, step, *args)

    monkeypatch.setattr(loop, "save", save)
    result = train(backend, digits, out, seed=1, num_steps=4, checkpoint_every=2,
                   overwrite=True)
    home = writer_home(out)
    # the first checkpoint is written aside while the old run is untouched; then it is swapped
    assert seen == [(2, home / "new", True), (4, out, False)]
    assert result.run_dir == out and json.loads((out / runs.CONFIG_FILE).read_text())["seed"] == 1
    assert not any((out / name).exists() for name in OLD_RESULTS)
    assert sorted(p.name for p in (out / runs.CHECKPOINT_DIR).iterdir()) == [
        "latest", "step-00000002", "step-00000004"]
    steps = pd.read_csv(out / runs.HISTORY_FILE).query("split == 'train'")["step"]
    assert steps.tolist() == [1, 2, 3, 4]
    assert_no_writer_leftovers(out)


def test_an_interrupted_new_run_before_its_first_checkpoint_leaves_no_trace(digits, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "run"
    before = trained_run_with_results("pyro", digits, out)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("pyro", digits, out, seed=1, overwrite=True)
    assert folder_bytes(out) == before
    with pytest.raises(KeyboardInterrupt):
        train("pyro", digits, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert_no_writer_leftovers(out)


# --------------------------------------------------------------------------- refusals


def test_a_second_writer_is_refused_and_the_run_untouched(digits, tmp_path):
    out = tmp_path / "run"
    before = trained_run_with_results("pyro", digits, out)
    with RunWriter(out):  # as another process training into the same folder
        for kwargs in ({"overwrite": True}, {"resume": True, "num_steps": 12}):
            with pytest.raises(RunLockedError, match="is being written by process"):
                train("pyro", digits, out, **kwargs)
    assert folder_bytes(out) == before


def test_a_folder_that_is_not_a_run_is_refused_and_untouched(digits, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / runs.HISTORY_FILE).write_text("the user's own history\n")
    (mine / runs.SPEC_FILE).write_text("# the user's own spec\n")
    before = folder_bytes(mine)
    for kwargs in ({}, {"overwrite": True}):
        with pytest.raises(runs.NotARunError, match="not a ppl_vae run; nothing was touched"):
            train("pyro", digits, mine, **kwargs)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train("pyro", digits, mine, resume=True)
    assert folder_bytes(mine) == before


# --------------------------------------------------------------------------- resume details


@pytest.mark.parametrize("backend", BACKENDS)
def test_extending_a_finished_run_adds_no_duplicate_history_row(backend, digits, tmp_path):
    out = tmp_path / "run"
    train(backend, digits, out, num_steps=6, eval_every=3)
    result = train(backend, digits, out, num_steps=9, eval_every=3, resume=True)
    for history in (result.history, pd.read_csv(out / runs.HISTORY_FILE)):
        assert not history.duplicated(["step", "split"]).any()
        assert history.query("split == 'train'")["step"].tolist() == list(range(1, 10))
        assert history.query("split == 'valid'")["step"].tolist() == [0, 3, 6, 9]


def test_torn_checkpoint_folders_are_ignored_and_cleaned(digits, tmp_path):
    out = tmp_path / "run"
    train("pyro", digits, out)
    root = out / runs.CHECKPOINT_DIR
    (root / "step-00000006" / checkpoint.MANIFEST_FILE).unlink()  # an interrupted rewrite
    (root / "step-00000099").mkdir()  # an emptied folder
    # latest names step 6, which is torn: resume starts from the complete step 3
    assert checkpoint.latest_checkpoint(out) == root / "step-00000003"
    train("pyro", digits, out, num_steps=9, resume=True)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000006",
                                                      "step-00000009"]
    assert checkpoint.load_checkpoint(root / "step-00000006").step == 6


def test_only_this_modules_folders_are_deleted_never_through_a_link(digits, tmp_path):
    """In checkpoints/, a user's folder named like ``step-by-step`` and a link named like a
    checkpoint stay, and so does what the link points to."""
    out = tmp_path / "run"
    train("pyro", digits, out)
    root = out / runs.CHECKPOINT_DIR
    user = tmp_path / "user"
    (user / "step-by-step").mkdir(parents=True)
    (user / "step-by-step" / "plan.txt").write_text("the user's plan\n")
    shutil.copytree(user / "step-by-step", root / "step-by-step")
    (root / "step-00000001").symlink_to(user / "step-by-step", target_is_directory=True)
    before = folder_bytes(user)
    train("pyro", digits, out, num_steps=9, resume=True)
    assert folder_bytes(user) == before
    assert (root / "step-by-step" / "plan.txt").read_text() == "the user's plan\n"
    assert (root / "step-00000001").is_symlink()
    assert checkpoint.latest_checkpoint(out) == root / "step-00000009"


def test_a_disk_full_in_a_checkpoint_leaves_latest_params_and_history_at_one_step(
        digits, tmp_path, monkeypatch):
    """The write of the top-level parameters of the step-6 checkpoint fails (ENOSPC): latest
    still names step 3, and params.safetensors and history.csv are step 3's, so a reader
    uses and reports one step."""
    out = tmp_path / "run"
    train("pyro", digits, out, num_steps=3)
    step3 = folder_bytes(out)
    original = checkpoint.atomic_write_bytes

    def full_at_step_6(path, data):
        if path.name == runs.PARAMS_FILE and (out / runs.CHECKPOINT_DIR / "step-00000006"
                                              ).exists():
            raise OSError(28, "No space left on device", str(path))
        original(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full_at_step_6)
    with pytest.raises(OSError, match="No space left"):
        train("pyro", digits, out, num_steps=6, resume=True)
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint(out).name == "step-00000003"
    for name in (runs.PARAMS_FILE, runs.HISTORY_FILE):
        assert (out / name).read_bytes() == step3[name]
    checkpoint.check_run_files(out)  # consistent: no refusal
    assert runs.read_run(out).progress().step == 3
    # a params file that is not the one latest committed is refused, naming it
    shutil.copy(out / runs.CHECKPOINT_DIR / "step-00000006" / runs.PARAMS_FILE,
                out / runs.PARAMS_FILE)
    with pytest.raises(CheckpointError, match=r"params.safetensors is not the one checkpoint "
                                              r"step-00000003 committed.*--resume"):
        runs.load_run(out)
    train("pyro", digits, out, num_steps=6, resume=True)  # resume repairs it
    assert runs.load_run(out).progress().step == 6


def test_an_overwrite_deletes_a_link_in_the_old_run_not_what_it_points_to(digits, tmp_path):
    out = tmp_path / "run"
    train("pyro", digits, out)
    user = tmp_path / "user"
    user.mkdir()
    (user / "plan.txt").write_text("the user's plan\n")
    (out / runs.VARIANCE_DIR).symlink_to(user, target_is_directory=True)
    before = folder_bytes(user)
    train("pyro", digits, out, overwrite=True)
    assert folder_bytes(user) == before and not (out / runs.VARIANCE_DIR).exists()
