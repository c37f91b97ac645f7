"""``ppl-vae bench --quick`` as the CI's harness check: files, columns, finite ratios. No timed
assertions: the figures of a quick run on a shared machine mean nothing."""

import json

import numpy as np
import pandas as pd
import pytest

from ppl_vae.cli import main


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick"
    assert main(["--threads", "1", "bench", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


def test_quick_bench_writes_every_table(bench_dir):
    for name in ("training_times", "training", "ratios", "throughput", "threads", "targets",
                 "scaling"):
        assert (bench_dir / f"{name}.csv").is_file(), name
    for name in ("bench.json", "report.md", "report.html", "figures/report-scaling.png"):
        assert (bench_dir / name).is_file(), name
    saved = json.loads((bench_dir / "bench.json").read_text())
    assert saved["config"]["epochs"] == 2 and saved["machine"]["torch_threads"] == 1


def test_quick_bench_ratios_and_fractions_are_finite_and_positive(bench_dir):
    ratios = pd.read_csv(bench_dir / "ratios.csv")
    assert set(zip(ratios["loop"], ratios["versus"], strict=True)) == {
        ("ppl_vae.fit, Pyro", "hand-written PyTorch"),
        ("ppl_vae.fit, Pyro", "hand-written PyTorch, fused Adam"),
        ("ppl_vae.fit, NumPyro", "hand-written JAX/optax"),
        ("ppl_vae.fit, Pyro", "ppl_vae.fit, NumPyro")}
    for column in ("ratio", "ratio_q25", "ratio_q75"):
        assert np.all(np.isfinite(ratios[column]) & (ratios[column] > 0))
    times = pd.read_csv(bench_dir / "training_times.csv")
    assert len(times) == 5 * 2 and (times["seconds"] > 0).all()
    throughput = pd.read_csv(bench_dir / "throughput.csv")
    assert len(throughput) == 4
    for column in ("per_second", "gflops", "roofline_gflops", "fraction_of_roofline"):
        assert np.all(np.isfinite(throughput[column]) & (throughput[column] > 0))
    # the importance-sampled log p(x) of the untrained model: finite, far below 0
    is_rows = throughput[throughput["workload"] == "importance sampling"]
    assert np.all(is_rows["mean_log_px"] < -100)
    targets = pd.read_csv(bench_dir / "targets.csv")
    assert len(targets) == 7 and targets["met"].isin([True, False]).all()
    bounds = dict(zip(targets["measure"], targets["target"], strict=True))
    assert bounds["ppl_vae.fit, Pyro / hand-written PyTorch, fused Adam (s/epoch)"] == "<= 1.12"
    assert bounds["ppl_vae.fit, NumPyro / hand-written JAX/optax (s/epoch)"] == "<= 1.05"


def test_quick_bench_threads_and_scaling_tables(bench_dir):
    threads = pd.read_csv(bench_dir / "threads.csv")
    assert 1 in set(threads["threads"]) and (threads["median_s"] > 0).all()
    assert threads["vs_best"].min() == 1.0
    scaling = pd.read_csv(bench_dir / "scaling.csv")
    assert set(scaling["backend"]) == {"pyro", "numpyro"}
    assert (scaling["seconds"] > 0).all()
    first = scaling.groupby(["backend", "factor"])["relative_cost"].first()
    assert np.allclose(first, 1.0)


def test_bench_refuses_to_overwrite_an_earlier_bench(bench_dir, capsys):
    assert main(["bench", "--quick", "--out", str(bench_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_bench_refuses_a_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 2
    assert "other files" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bench_on_a_missing_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "--quick", "--device", "cuda", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "device='cpu'" in err
