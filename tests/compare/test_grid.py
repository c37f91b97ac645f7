"""The comparison grid end to end: both executors give identical tables, a killed grid
resumes with only its missing cells, and the ``ppl-vae compare`` command."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ppl_vae.cli import main
from ppl_vae.compare import LocalPool, RayExecutor, collect, plan, run_grid
from ppl_vae.compare.cells import CELL_FILE, CELLS_DIR, TIME_METRICS
from tests.compare.helpers import SETTINGS, SyntheticExecutor, write_specs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    return write_specs(tmp_path_factory.mktemp("specs"))


@pytest.fixture(scope="module")
def local_grid(specs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    cells = plan(specs, [0, 1], **SETTINGS)
    return cells, out, run_grid(cells, out, LocalPool(2))


def _without_times(table):
    return table[~table["metric"].isin(TIME_METRICS)].reset_index(drop=True)


def test_local_pool_runs_every_cell_and_stores_per_datapoint_results(local_grid):
    cells, out, result = local_grid
    assert sorted(result.ran) == sorted(c.key() for c in cells) and result.skipped == []
    assert result.failures.empty
    table = result.table
    assert len(table.drop_duplicates("key")) == 4
    log_px = table[table["metric"] == "log_px"]
    assert (log_px["value"] < 0).all() and log_px["stderr"].gt(0).all()
    for cell in cells:
        points = pd.read_csv(out / CELLS_DIR / cell.key() / "per_datapoint.csv")
        assert len(points) == 16
        mean = log_px.loc[log_px["key"] == cell.key(), "value"].iloc[0]
        assert points["log_px"].mean() == pytest.approx(mean, rel=1e-12)
    # every spec is paired with the baseline (the first spec) on both seeds
    assert result.paired["spec"].tolist() == ["tiny_laplace"]
    assert sorted(result.paired_seeds["seed"]) == [0, 1]


def test_a_second_run_skips_finished_cells(local_grid):
    cells, out, first = local_grid
    again = run_grid(cells, out, LocalPool(2))
    assert again.ran == [] and sorted(again.skipped) == sorted(c.key() for c in cells)
    pd.testing.assert_frame_equal(again.table, first.table)


def test_ray_gives_the_same_table_as_the_local_pool(local_grid, specs, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'ppl_vae[ray]'")
    cells, _, local = local_grid
    result = run_grid(plan(specs, [0, 1], **SETTINGS), tmp_path, RayExecutor(num_cpus=2))
    assert sorted(result.ran) == sorted(c.key() for c in cells)
    # bit-identical: one thread per worker, the same seeds; only wall-clock seconds differ
    pd.testing.assert_frame_equal(_without_times(result.table), _without_times(local.table))
    pd.testing.assert_frame_equal(result.paired, local.paired)


def test_a_validation_split_cell_scores_the_validation_images(local_grid, specs, tmp_path):
    """``split="valid"`` evaluates the same trained model on the validation rows (chosen on
    them, reported on test once): other source rows, another key, the same training."""
    from ppl_vae.data import prepare

    cells, out, _ = local_grid
    test_cell = cells[0]
    valid_cell = plan(specs[:1], [test_cell.seed], **SETTINGS, split="valid")[0]
    assert valid_cell.key() != test_cell.key()
    result = run_grid([valid_cell], tmp_path, LocalPool(1))
    points = pd.read_csv(tmp_path / CELLS_DIR / valid_cell.key() / "per_datapoint.csv")
    splits = prepare("digits", likelihood="bernoulli", data_shape=(64,))
    assert points["source_row"].tolist() == splits.indices["valid"][:16].tolist()
    assert points["label"].tolist() == splits.valid_labels[:16].tolist()
    assert result.settings["split"] == "valid"
    trained = pd.read_csv(out / CELLS_DIR / test_cell.key() / "history.csv")
    again = pd.read_csv(tmp_path / CELLS_DIR / valid_cell.key() / "history.csv")
    pd.testing.assert_frame_equal(trained.drop(columns="wall_time"),
                                  again.drop(columns="wall_time"))


def test_a_killed_grid_resumes_with_only_the_missing_cells(specs, tmp_path):
    out = tmp_path / "grid"
    # cells long enough (600 steps, about 1 s each here) that the kill lands before the second one
    # is done: with 6 steps a warm worker once finished all three between two polls
    args = [sys.executable, "-m", "ppl_vae.cli", "compare", specs[0], "--dataset", "digits",
            "--seeds", "3", "--steps", "600", "--num-samples", "20", "--num-points", "16",
            "--workers", "1", "--quiet", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(args, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 240
        while not list(out.glob(f"{CELLS_DIR}/*/{CELL_FILE}")):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no cell finished within 240 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its pool worker, mid-grid
        proc.wait()
    done = {p.parent.name for p in out.glob(f"{CELLS_DIR}/*/{CELL_FILE}")}
    assert 1 <= len(done) < 3
    cells = plan(specs[:1], [0, 1, 2], **{**SETTINGS, "num_steps": 600, "model_samples": 100})
    result = run_grid(cells, out, LocalPool(2))
    assert set(result.skipped) == done
    assert sorted(result.ran) == sorted(c.key() for c in cells if c.key() not in done)
    assert len(collect(cells, out).table.drop_duplicates("key")) == 3


def test_cli_compare_refuses_a_baseline_that_is_not_a_spec(specs, tmp_path, capsys):
    code = main(["compare", *specs, "--dataset", "digits", "--baseline", "nope",
                 "--out", str(tmp_path)])
    assert code == 2
    assert "--baseline 'nope' is not one of the specs" in capsys.readouterr().err


def test_cli_compare_refuses_an_address_without_ray(specs, tmp_path, capsys):
    code = main(["compare", *specs, "--address", "127.0.0.1:6379", "--out", str(tmp_path)])
    assert code == 2 and "--address names a Ray cluster" in capsys.readouterr().err


def test_a_failed_cell_is_retried_once_and_then_reported(specs, tmp_path):
    cells = plan(specs, [0, 1], **SETTINGS)
    flaky, broken = cells[0].key(), cells[1].key()
    executor = SyntheticExecutor(flaky, broken)
    result = run_grid(cells, tmp_path, executor)
    assert executor.calls[1] == sorted([flaky, broken])  # only the failed cells, once more
    assert len(executor.calls) == 2
    assert sorted(result.ran) == sorted(c.key() for c in cells if c.key() != broken)
    assert result.failures[["key", "error"]].values.tolist() == [
        [broken, "RuntimeError: worker lost"]]
    assert len(result.table.drop_duplicates("key")) == 3
