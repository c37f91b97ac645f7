"""Tests for :mod:`ppl_vae.runs.writer`: one writer per run folder (refused at once, naming the
holder; a lock of a process killed with SIGKILL is taken over), the swap of a new run, the
recovery of a swap cut short, and the refusal of folders that are not runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ppl_vae
from ppl_vae import runs
from ppl_vae.runs import RunLockedError, RunWriter, check_replaceable, writer_home
from tests.conftest import folder_bytes

HOLDER = """
import sys, time
from ppl_vae.runs import RunWriter

with RunWriter(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def fake_run(path, marker="old"):
    """A folder that counts as a run (run.json) with one result file."""
    path.mkdir(parents=True, exist_ok=True)
    (path / runs.CONFIG_FILE).write_text('{"backend": "pyro"}\n')
    (path / runs.METRICS_FILE).write_text(marker)
    return path


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    with RunWriter(out):
        with pytest.raises(RunLockedError, match=rf"being written by process {os.getpid()} on "):
            RunWriter(out).__enter__()
    with RunWriter(out):  # released on exit: the next writer gets it
        pass
    assert sorted(p.name for p in writer_home(out).iterdir()) == ["lock"]


def test_the_lock_of_a_process_killed_with_sigkill_is_taken_over(tmp_path):
    out = tmp_path / "run"
    package_root = str(Path(ppl_vae.__file__).parents[1])  # this checkout's ppl_vae
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(out)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": package_root})
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"process {proc.pid} "):
            RunWriter(out).__enter__()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # its holder.json is stale, but the OS dropped the lock with the process
    assert (writer_home(out) / "holder.json").exists()
    with RunWriter(out):
        assert str(os.getpid()) in (writer_home(out) / "holder.json").read_text()


def test_commit_swaps_the_new_run_in_and_deletes_the_old_one(tmp_path):
    """Until the commit, the old run is untouched; after it, only the new run is there."""
    out = fake_run(tmp_path / "run")
    with RunWriter(out) as writer:
        fake_run(writer.stage(overwrite=True), marker="new")
        assert (out / runs.METRICS_FILE).read_text() == "old"
        assert writer.commit() == out
    assert (out / runs.METRICS_FILE).read_text() == "new"
    assert sorted(p.name for p in writer_home(out).iterdir()) == ["lock"]


@pytest.mark.parametrize("killed", ["between the renames", "while deleting the old run"])
def test_a_swap_cut_short_is_repaired_by_the_next_writer(killed, tmp_path):
    out = tmp_path / "run"
    home = writer_home(out)
    fake_run(home / "old", marker="old")
    fake_run(home / "new", marker="new")
    if killed == "while deleting the old run":
        fake_run(out, marker="new")
    with RunWriter(out):
        pass
    # between the renames nothing of the new run was in place yet: the old one comes back
    expected = "old" if killed == "between the renames" else "new"
    assert (out / runs.METRICS_FILE).read_text() == expected
    assert sorted(p.name for p in home.iterdir()) == ["lock"]


def test_folders_that_are_not_runs_are_refused_and_untouched(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "history.csv").write_text("my own notes\n")
    (foreign / "spec.toml").write_text("# mine\n")
    before = folder_bytes(foreign)
    with pytest.raises(runs.NotARunError, match=r"2 entries \(history.csv, spec.toml\).*"
                                                "nothing was touched"):
        check_replaceable(foreign, overwrite=True)
    assert folder_bytes(foreign) == before
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(runs.NotARunError, match="is a file"):
        check_replaceable(a_file, overwrite=True)
    with pytest.raises(runs.RunExistsError, match="--overwrite"):
        check_replaceable(fake_run(tmp_path / "run"), overwrite=False)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", overwrite=False)  # an empty folder is fine
    check_replaceable(tmp_path / "new", overwrite=False)
