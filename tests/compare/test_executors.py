"""The executors' resources: threads per cell, CPUs and GPUs asked of Ray, bad values refused."""

import subprocess
import sys
from pathlib import Path

import pytest

from ppl_vae.cli import main
from ppl_vae.compare.executors import RayExecutor, make_executor, thread_env

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_runs_with_the_threads_its_cell_was_given():
    code = ("from ppl_vae.compare.executors import limit_threads; limit_threads(3); "
            "import os, torch; print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, check=True)
    assert out.stdout.split() == ["3", "3"]
    assert "XLA_FLAGS" in thread_env(1) and "XLA_FLAGS" not in thread_env(3)


def test_the_local_pool_takes_cpus_per_cell_as_its_threads():
    pool = make_executor("local", workers=2, cpus_per_cell=4)
    assert (pool.workers, pool.threads, pool.capacity()) == (2, 4, 2)
    with pytest.raises(ValueError, match="--gpus-per-cell asks Ray for GPUs"):
        make_executor("local", gpus_per_cell=0.5)


def test_ray_refuses_a_cluster_without_what_one_cell_asks_for():
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'ppl_vae[ray]'")
    executor = RayExecutor(cpus_per_cell=2, gpus_per_cell=0.25)
    executor._check_resources({"CPU": 4.0, "GPU": 1.0})  # four cells fit on one GPU
    with pytest.raises(ValueError, match="has 0 GPUs, fewer than the 0.25 per cell asked for; "
                                         "lower --gpus-per-cell or drop --device cuda"):
        executor._check_resources({"CPU": 4.0})
    with pytest.raises(ValueError, match="has 1 CPUs, fewer than the 2 per cell"):
        executor._check_resources({"CPU": 1.0, "GPU": 1.0})
    for bad in ({"cpus_per_cell": 0}, {"cpus_per_cell": 1.5}, {"gpus_per_cell": -1.0}):
        with pytest.raises(ValueError, match="per-cell must be"):
            RayExecutor(**bad)


def test_cli_gpus_per_cell_needs_cuda(tmp_path, capsys):
    code = main(["compare", "gaussian_gaussian", "--gpus-per-cell", "0.5",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "--gpus-per-cell is for --device cuda" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
