"""A run's data are rebuilt from what run.json records, or refused: the dataset file's absolute
path and SHA-256 and the splits' SHA-256 (:mod:`ppl_vae.data.provenance`); metrics are keyed
by the run id of run.json, not the folder name."""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import pandas as pd
import pytest

from ppl_vae import runs
from ppl_vae.cli import main
from ppl_vae.data import DataError
from ppl_vae.data.provenance import (
    check_source,
    content_sha256,
    source_record,
    splits_digest,
)
from tests.commands.test_train import SPEC

EVALUATE = ["--num-samples", "2", "--model-samples", "0", "--max-points", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained from a working folder on a relative dataset path."""
    root = tmp_path_factory.mktemp("provenance")
    (root / "work").mkdir()
    images = np.random.default_rng(0).integers(0, 256, (120, 64)).astype(np.uint8)
    np.savez(root / "work" / "data.npz", x=images)
    (root / "tiny.toml").write_text(textwrap.dedent(SPEC))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root / "work")
        assert main(["train", str(root / "tiny.toml"), "--dataset", "data.npz", "--out",
                     str(root / "run"), "--steps", "2", "--quiet"]) == 0
    return root


def copy_of(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained / "run", copy)
    return copy


def test_run_json_records_the_absolute_path_and_the_hashes(trained):
    data = json.loads((trained / "run" / runs.CONFIG_FILE).read_text())["data"]
    path = trained / "work" / "data.npz"
    assert data["source"] == "data.npz" and data["path"] == str(path)
    assert data["sha256"] == content_sha256(path)
    assert data["splits_sha256"] == splits_digest(runs.read_run(trained / "run").splits())


def test_a_relative_dataset_path_is_found_from_another_working_folder(trained, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no data.npz here
    assert main(["evaluate", str(copy_of(trained, tmp_path)), *EVALUATE]) == 0


def test_a_replaced_dataset_file_is_refused_naming_it(trained, tmp_path, capsys):
    copy = copy_of(trained, tmp_path)
    config = json.loads((copy / runs.CONFIG_FILE).read_text())
    moved = tmp_path / "data.npz"
    np.savez(moved, x=np.zeros((120, 64), np.uint8))  # other data at the recorded path
    config["data"]["path"] = str(moved)
    (copy / runs.CONFIG_FILE).write_text(json.dumps(config))
    for command in (["evaluate", str(copy), *EVALUATE], ["sample", str(copy)],
                    ["diagnose", str(copy)], ["variance", str(copy), "--draws", "2"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"the dataset {moved} changed since the run was trained on it" in err, err
        assert "restore the original file, or train a new run" in err


def test_a_hand_edited_split_seed_is_refused(trained, tmp_path, capsys):
    copy = copy_of(trained, tmp_path)
    config = json.loads((copy / runs.CONFIG_FILE).read_text())
    config["data"]["seed"] = 1
    (copy / runs.CONFIG_FILE).write_text(json.dumps(config))
    assert main(["evaluate", str(copy), *EVALUATE]) == 2
    assert "differ from the data the run was trained on" in capsys.readouterr().err
    assert not (copy / runs.METRICS_FILE).exists()


def test_metrics_are_keyed_by_the_run_id_that_copies_keep(trained, tmp_path, capsys):
    copy = copy_of(trained, tmp_path)
    run_id = json.loads((copy / runs.CONFIG_FILE).read_text())["run_id"]
    assert len(run_id) == 32
    assert main(["evaluate", str(copy), *EVALUATE]) == 0
    assert set(pd.read_csv(copy / runs.METRICS_FILE)["run"]) == {run_id}
    renamed = tmp_path / "renamed"
    copy.rename(renamed)
    assert main(["report", str(renamed)]) == 0
    assert "## Headline (test split)" in (renamed / "report.md").read_text()
    # rows another run left in the folder are not this run's headline
    metrics = pd.read_csv(renamed / runs.METRICS_FILE).assign(run="another-run")
    metrics.to_csv(renamed / runs.METRICS_FILE, index=False)
    assert main(["report", str(renamed)]) == 0
    md = (renamed / "report.md").read_text()
    assert "Headline" not in md and "no metrics yet" in md


def test_source_record_of_built_in_names_and_folders(tmp_path):
    assert source_record("digits") == {} and source_record(np.zeros(3)) == {}
    (tmp_path / "a.png").write_bytes(b"1")
    first = content_sha256(tmp_path)
    (tmp_path / "a.png").write_bytes(b"2")
    assert content_sha256(tmp_path) != first
    assert source_record(tmp_path) == {"path": str(tmp_path), "sha256": content_sha256(tmp_path)}
    with pytest.raises(DataError, match="is missing; put the file back"):
        check_source({"path": str(tmp_path / "gone.npz"), "sha256": "0"}, "run.json")
