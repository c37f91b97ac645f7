"""What compare never does: write into a folder it does not own, put a cell outside --out,
reuse a cell whose data or files changed, or leave its workers running after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from ppl_vae.cli import main
from ppl_vae.compare import Cell, plan, run_grid
from ppl_vae.compare.cells import CELL_FILE, CELLS_DIR, PER_DATAPOINT_FILE, cell_dir
from ppl_vae.compare.grid import MARKER_FILE
from tests.compare.helpers import SETTINGS, TINY, SyntheticExecutor, write_specs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def specs(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    return write_specs(folder)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_compare_refuses_a_folder_of_files_it_did_not_write_and_touches_nothing(
        specs, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "table.csv").write_text("my own table\n")
    (out / "report.html").write_text("<p>my report</p>\n")
    before = _snapshot(tmp_path)
    code = main(["compare", *specs, "--dataset", "digits", "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--out {out} holds 2 entries (report.html, table.csv)" in err
    assert "--overwrite" in err
    assert _snapshot(tmp_path) == before  # byte for byte, and nothing new anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "specs"]


def test_a_refused_file_out_creates_nothing(specs, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("notes\n")
    before = _snapshot(tmp_path)
    assert main(["compare", *specs, "--dataset", "digits", "--out", str(out)]) == 2
    assert f"--out {out} is a file" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "specs"]


def test_a_storage_uri_out_is_refused(specs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", *specs, "--dataset", "digits", "--out", "s3://bucket/grid"]) == 2
    assert "--out s3://bucket/grid is a storage URI" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["specs"]


def test_overwrite_writes_beside_a_users_files_and_deletes_none(specs, tmp_path):
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "plan.txt").write_text("keep me\n")
    (out / "data.csv").write_text("1,2,3\n")
    before = _snapshot(out)
    cells = plan(specs, [0], **SETTINGS)
    with pytest.raises(ValueError, match="that ppl-vae compare did not write"):
        run_grid(cells, out, SyntheticExecutor())
    assert _snapshot(out) == before
    assert len(run_grid(cells, out, SyntheticExecutor(), overwrite=True).ran) == 2
    after = _snapshot(out)
    assert {name: after[name] for name in before} == before
    assert json.loads((out / MARKER_FILE).read_text())["written_by"] == "ppl-vae compare"
    # the folder is the grid's now: a re-run needs no --overwrite and runs nothing
    executor = SyntheticExecutor()
    assert run_grid(cells, out, executor).ran == [] and executor.calls == []


@pytest.mark.parametrize("name", ["../../escaped", "/abs/escaped", "a/b", ".."])
def test_a_spec_name_that_is_a_path_is_refused(tmp_path, name, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.format(name=name, kl="analytic", posterior="gaussian",
                                prior="standard-normal"))
    out = tmp_path / "grid" / "out"
    out.parent.mkdir()
    # the spec file itself is refused (spec.py), before any cell folder is named
    with pytest.raises(ValueError, match="is used as a folder name"):
        plan([str(spec)], [0], **SETTINGS)
    with pytest.raises(ValueError, match="cannot name a cell folder"):
        cell_dir(out, Cell(spec_toml="", spec_name=name, seed=0))
    code = main(["compare", str(spec), "--dataset", "digits", "--out", str(out)])
    assert code == 2 and "give a plain name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.toml", "grid"]


def test_a_cell_finished_on_other_data_is_not_reused(specs, tmp_path):
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=(rng.random((40, 64)) > 0.5).astype(np.float32))
    out = tmp_path / "grid"
    settings = {**SETTINGS, "dataset": str(data)}
    first = plan(specs[:1], [0], **settings)
    run_grid(first, out, SyntheticExecutor())
    record = json.loads((cell_dir(out, first[0]) / CELL_FILE).read_text())
    assert record["cell"]["dataset_sha256"] == first[0].dataset_sha256
    np.savez(data, x=(rng.random((40, 64)) > 0.5).astype(np.float32))  # the file replaced
    again = plan(specs[:1], [0], **settings)
    assert again[0].dataset_sha256 != first[0].dataset_sha256
    lines, executor = [], SyntheticExecutor()
    result = run_grid(again, out, executor, progress=lines.append)
    assert executor.calls == [[again[0].key()]] and result.ran == [again[0].key()]
    assert any(f"cell {first[0].key()} was finished on other data" in line for line in lines)


def test_a_truncated_per_datapoint_table_is_never_paired_but_run_again(specs, tmp_path):
    cells, out = plan(specs, [0], **SETTINGS), tmp_path / "grid"
    run_grid(cells, out, SyntheticExecutor())
    table = cell_dir(out, cells[1]) / PER_DATAPOINT_FILE
    table.write_text("\n".join(table.read_text().splitlines()[:2]) + "\n")  # 1 of 2 rows
    lines, executor = [], SyntheticExecutor()
    result = run_grid(cells, out, executor, progress=lines.append)
    assert executor.calls == [[cells[1].key()]]
    assert any(f"cell {cells[1].key()}: {PER_DATAPOINT_FILE} does not match its SHA-256"
               in line for line in lines)
    assert result.paired["num_datapoints"].tolist() == [2]


def test_a_killed_compare_takes_its_pool_worker_and_the_cell_lock_with_it(specs, tmp_path):
    out = tmp_path / "grid"
    args = [sys.executable, "-m", "ppl_vae.cli", "compare", specs[0], "--dataset", "digits",
            "--seeds", "1", "--steps", "1000000", "--workers", "1", "--quiet",
            "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(args, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 240
        holders = []
        while not holders:  # the worker holds the cell's lock and trains
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no cell started training within 240 s"
            holders = list(out.glob(f"{CELLS_DIR}/.*.ppl-vae/holder.json"))
            time.sleep(0.1)
        time.sleep(0.5)  # holder.json is written atomically; let training begin
        worker = json.loads(holders[0].read_text())["pid"]
        assert worker != proc.pid
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone
        proc.wait()
        deadline = time.monotonic() + 20
        while _alive(worker):
            assert time.monotonic() < deadline, f"pool worker {worker} outlived its driver"
            time.sleep(0.1)
        lock = FileLock(str(holders[0].with_name("lock")))
        lock.acquire(timeout=5)  # free: the OS dropped the dead worker's lock
        lock.release()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever survived
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_spec_that_cannot_read_the_data_is_refused_before_any_cell(tmp_path, capsys):
    """A 784-pixel spec on the 64-pixel digits fails once, up front (exit 2, one line naming
    both sizes), instead of every cell failing twice; nothing is written."""
    from ppl_vae.data import DataError

    with pytest.raises(DataError, match="64 values per datapoint but the spec expects 784"):
        plan(["gaussian_gaussian"], [0], dataset="digits")
    out = tmp_path / "out"
    code = main(["compare", "gaussian_gaussian", "--dataset", "digits", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "expects 784" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
