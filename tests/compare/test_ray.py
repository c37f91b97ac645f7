"""Grids on a Ray cluster: a head and two worker nodes on 127.0.0.1, only the driver writes
--out, a worker node removed mid-grid loses nothing; an address where no Ray answers ends in
seconds with one line."""

import contextlib
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

from ppl_vae.cli import main
from ppl_vae.compare import LocalPool, RayExecutor, plan, ray_connect, run_grid
from ppl_vae.compare.cells import (
    CELLS_DIR,
    PER_DATAPOINT_FILE,
    RESULT_FILES,
    TIME_METRICS,
    cell_dir,
)
from ppl_vae.compare.store import result_files
from ppl_vae.runs.layout import PARAMS_FILE
from tests.compare.helpers import SETTINGS, write_specs

pytest.importorskip("ray", reason="Ray is not installed: pip install 'ppl_vae[ray]'")


@pytest.fixture
def specs(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    return write_specs(folder)


def test_an_address_where_nothing_listens_ends_at_once(specs, tmp_path, capsys):
    # "at once": the refused TCP connect is the reason given, so the Ray probe never ran
    # (no clock in the test: the reason shows which check ended it)
    code = main(["compare", *specs, "--executor", "ray", "--address", "127.0.0.1:1",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no Ray cluster answers at --address 127.0.0.1:1" in err and "ray start --head" in err
    assert "refused" in err.lower() and "GCS" not in err, err
    assert not (tmp_path / "out").exists()


@contextlib.contextmanager
def silent_server():
    """A TCP server on 127.0.0.1 that accepts every connection and never says a word: its
    port."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept_and_say_nothing():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # the server closed
                return

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for conn in held:
            conn.close()


def refuse_silent_server(specs, tmp_path, capsys):
    """``ppl-vae compare --address`` of a silent server: exit 2, one line naming the address,
    nothing written; the line."""
    with silent_server() as port:
        code = main(["compare", *specs, "--executor", "ray", "--address", f"127.0.0.1:{port}",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1
    assert f"no Ray cluster answers at --address 127.0.0.1:{port}" in err
    assert not (tmp_path / "out").exists()
    return err


def test_a_server_that_is_no_ray_gcs_ends_at_the_probes_hard_limit(specs, tmp_path, capsys,
                                                                    monkeypatch):
    """The probe's hard limit (ray_connect.PROBE_SECONDS, a subprocess timeout: the bound on
    the wait, by construction) ends it, shortened here to 1 s so the test is quick; Ray's
    own GCS timeouts (about 16 s) are the slow test below."""
    monkeypatch.setattr(ray_connect, "PROBE_SECONDS", 1.0)
    err = refuse_silent_server(specs, tmp_path, capsys)
    assert "its GCS did not answer within 1 s" in err, err


@pytest.mark.slow
def test_a_server_that_is_no_ray_gcs_ends_by_rays_own_gcs_timeouts(specs, tmp_path, capsys):
    """With the real limits, Ray's shortened GCS timeouts (ray_connect.GCS_TIMEOUTS, about
    16 s) end the probe before its hard limit of PROBE_SECONDS = 20 s: the reason is that no
    GCS answered, not the hard limit."""
    assert ray_connect.PROBE_SECONDS == 20.0
    err = refuse_silent_server(specs, tmp_path, capsys)
    assert "no Ray GCS answered it" in err, err


@pytest.fixture
def cluster():
    """A head (no CPUs: it only coordinates) and two one-CPU worker nodes, all on 127.0.0.1."""
    import ray
    from ray.cluster_utils import Cluster

    loopback = {"node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, **loopback})
    workers = [cluster.add_node(num_cpus=1, **loopback) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_a_grid_on_a_cluster_survives_a_lost_node_and_matches_the_local_pool(
        specs, tmp_path, cluster):
    cluster, workers = cluster
    cells = plan(specs, [0, 1], **SETTINGS)
    out = tmp_path / "ray"
    removed, lines = [], []

    def on_line(line):
        lines.append(line)
        if " done (" in line and not removed:  # the first result is in: a node goes away
            removed.append(workers[0].node_id)
            cluster.remove_node(workers[0])

    executor = RayExecutor(cluster.address)
    result = run_grid(cells, out, executor, progress=on_line)
    assert removed and result.failures.empty, lines
    keys = sorted(c.key() for c in cells)
    assert sorted(result.ran) == keys  # every cell once: no duplicates, none lost
    assert sorted(p.name for p in (out / CELLS_DIR).iterdir()) == keys
    assert len(result.table.drop_duplicates("key")) == len(cells)
    # only the cell whose result triggered the removal can have finished on the lost node
    assert sum(result_ran_on(out, c)["node_id"] == removed[0] for c in cells) <= 1
    for cell in cells:
        ran_on = result_ran_on(out, cell)
        # trained in a temporary folder on a worker node, gone now: only the driver wrote out
        assert not Path(ran_on["folder"]).exists() and out not in Path(ran_on["folder"]).parents
        assert ran_on["node_id"] in {w.node_id for w in workers}
        assert ran_on["device"] == "cpu" and ran_on["threads"] == 1
    local = run_grid(cells, tmp_path / "local", LocalPool(2))
    pd.testing.assert_frame_equal(_without_times(result.table), _without_times(local.table))
    pd.testing.assert_frame_equal(result.paired, local.paired)
    for cell in cells:  # the per-datapoint tables and the trained parameters byte for byte
        ray_files = result_files(cell_dir(out, cell), RESULT_FILES)
        local_files = result_files(cell_dir(tmp_path / "local", cell), RESULT_FILES)
        assert set(ray_files) == set(local_files) == set(RESULT_FILES)
        for name in (PER_DATAPOINT_FILE, PARAMS_FILE):
            assert ray_files[name] == local_files[name]
        assert "checkpoints" not in {p.name for p in cell_dir(out, cell).iterdir()}
    # a re-run finds every cell done and runs nothing
    assert run_grid(cells, out, executor).ran == []


def result_ran_on(out, cell):
    import json

    return json.loads((cell_dir(out, cell) / "cell.json").read_text())["ran_on"]


def _without_times(table):
    return table[~table["metric"].isin(TIME_METRICS)].reset_index(drop=True)
