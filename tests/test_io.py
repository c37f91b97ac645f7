"""Atomic files and safetensors parameters (no pickle)."""

import numpy as np
import pytest

from ppl_vae import io
from ppl_vae.io import FileReadError


def test_arrays_round_trip_exactly_including_scalars_and_views(tmp_path):
    arrays = {"scalar": np.array(1.5), "vector": np.arange(3.0), "one": np.ones(1),
              "strided": np.arange(12.0).reshape(3, 4)[:, ::2], "f32": np.ones(2, np.float32)}
    io.save_arrays(tmp_path / "a.safetensors", arrays)
    loaded = io.load_arrays(tmp_path / "a.safetensors")
    assert set(loaded) == set(arrays)
    for name, value in arrays.items():
        assert loaded[name].shape == value.shape and loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name], value)


def test_corrupt_and_missing_files_raise_clear_errors(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 12)
    with pytest.raises(FileReadError, match="corrupt"):
        io.load_arrays(tmp_path / "bad.safetensors")
    with pytest.raises(FileReadError, match="not found"):
        io.load_arrays(tmp_path / "absent.safetensors")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(FileReadError, match="not valid JSON"):
        io.read_json(tmp_path / "bad.json")


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    io.atomic_write_text(target, "old")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_get_the_umask_permissions_of_an_ordinary_file(tmp_path, umask):
    old = io.os.umask(umask)
    try:
        assert io.current_umask() == umask
        io.atomic_write_text(tmp_path / "atomic.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        io.os.umask(old)
    mode = (tmp_path / "atomic.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o666 & ~umask
