"""Tests for :mod:`ppl_vae.runs.outputs` and :mod:`ppl_vae.runs.lock`: readers share a run's
lock and the trainer excludes them; an output folder holding a user's files is refused before
anything is touched; what a command wrote is recorded with the run id and checkpoint step it
read; output paths stay inside their folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ppl_vae import runs
from ppl_vae.runs import (
    OutputWriter,
    OutsideFolderError,
    RunExistsError,
    RunLockedError,
    RunWriter,
    contained,
)
from ppl_vae.runs.checkpoints import write_checkpoint
from tests.conftest import folder_bytes


def fake_run(path, run_id="abc123"):
    """A folder that counts as a run, with a checkpoint at step 6."""
    path.mkdir(parents=True)
    (path / runs.CONFIG_FILE).write_text(json.dumps({"backend": "pyro", "run_id": run_id}))
    write_checkpoint(path, 6, params={"w": np.zeros(2)}, arrays={}, state={}, history_csv="")
    return path


def test_an_output_folder_with_a_users_files_is_refused_byte_for_byte(tmp_path):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "us"
    out.mkdir()
    (out / runs.SAMPLES_FILE).write_bytes(b"the user's own picture")
    (out / "notes" / "plan.txt").parent.mkdir()
    (out / "notes" / "plan.txt").write_text("mine\n")
    before = folder_bytes(tmp_path)
    with pytest.raises(RunExistsError, match=r"us holds 2 file\(s\) ppl-vae did not write "
                                             r"\(notes/plan.txt, samples.png\); nothing was "
                                             r"touched.*--overwrite"):
        OutputWriter(out, command="sample", runs=[run]).__enter__()
    assert folder_bytes(tmp_path) == before
    with OutputWriter(out, command="sample", runs=[run], overwrite=True) as writer:
        writer.path(runs.SAMPLES_FILE).write_bytes(b"ours")
    assert (out / "notes" / "plan.txt").read_text() == "mine\n"  # other files stay


def test_what_a_command_wrote_is_recorded_and_a_users_edit_is_refused_again(tmp_path):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "out"
    with OutputWriter(out, command="variance", runs=[run]) as writer:
        assert writer.step() == 6
        writer.path("figures/report-x.png").write_bytes(b"png")
        (out / "report.html").write_text("<p>ours</p>")  # written without writer.path
    record = json.loads((out / runs.OUTPUTS_FILE).read_text())
    assert sorted(record) == ["figures/report-x.png", "report.html"]
    assert record["report.html"]["command"] == "variance"
    assert record["report.html"]["sources"] == [
        {"run": str(run.resolve()), "run_id": "abc123", "checkpoint_step": 6}]
    with OutputWriter(out, command="variance", runs=[run]):  # its own files: no refusal
        pass
    (out / "report.html").write_text("<p>the user's edit</p>")
    with pytest.raises(RunExistsError, match=r"\(report.html\)"):
        OutputWriter(out, command="variance", runs=[run]).__enter__()


def test_a_run_folder_itself_is_never_refused_for_its_own_file_names(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / runs.METRICS_FILE).write_text("written before outputs.json existed\n")
    with OutputWriter(run, command="evaluate", runs=[run]) as writer:
        writer.path(runs.METRICS_FILE).write_text("new\n")
    assert json.loads((run / runs.OUTPUTS_FILE).read_text())[runs.METRICS_FILE][
        "sources"][0]["checkpoint_step"] == 6


def test_readers_share_the_lock_and_the_trainer_excludes_them(tmp_path):
    run = fake_run(tmp_path / "run")
    with OutputWriter(run, command="evaluate", runs=[run]):
        with OutputWriter(tmp_path / "o", command="sample", runs=[run]):  # readers share
            pass
        with pytest.raises(RunLockedError, match="is being read by another ppl-vae command"):
            RunWriter(run).__enter__()
    with RunWriter(run):  # released: train may start
        with pytest.raises(RunLockedError, match="is being trained .* wait for the training"):
            OutputWriter(run, command="evaluate", runs=[run]).__enter__()
    with OutputWriter(run, command="evaluate", runs=[run]):  # and released again
        pass


def test_a_refused_reader_holds_no_lock(tmp_path):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "us"
    out.mkdir()
    (out / "x.txt").write_text("mine")
    with pytest.raises(RunExistsError):
        OutputWriter(out, command="sample", runs=[run]).__enter__()
    with RunWriter(run):  # the shared lock was given back
        pass


def test_output_paths_stay_inside_their_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "out" / "samples.png").symlink_to(tmp_path / "outside" / "x.png")
    with pytest.raises(OutsideFolderError, match="outside .*out; nothing was written"):
        contained(tmp_path / "out", "../escaped")
    with pytest.raises(OutsideFolderError):
        contained(tmp_path / "out", "/abs/path")
    with pytest.raises(OutsideFolderError):
        contained(tmp_path / "out", "samples.png")  # a link that leads out
    assert contained(tmp_path / "out", "figures/a.png") == tmp_path / "out" / "figures/a.png"
    assert not (tmp_path / "outside" / "x.png").exists()


def test_a_run_named_through_a_link_shares_the_lock_of_the_real_folder(tmp_path):
    run = fake_run(tmp_path / "real")
    (tmp_path / "link").symlink_to(run)
    with RunWriter(run):
        with pytest.raises(RunLockedError, match="is being trained"):
            OutputWriter(tmp_path / "link", command="evaluate",
                         runs=[tmp_path / "link"]).__enter__()
    with OutputWriter(tmp_path / "link", command="evaluate", runs=[tmp_path / "link"]) as w:
        w.path(runs.METRICS_FILE).write_text("x\n")  # followed: written into the real run
    assert (run / runs.METRICS_FILE).read_text() == "x\n"
