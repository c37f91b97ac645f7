"""Where a run's data came from, recorded so that the same data can be rebuilt and checked.

A run records (``run.json`` ``data``) the dataset file's absolute ``path`` and ``sha256``
(:func:`source_record`; a folder of images hashes its file names and bytes) and the SHA-256 of
the prepared splits (:func:`splits_digest`). A command that rebuilds the data reads the file
at the recorded path (not relative to today's working folder), refuses a file whose content
changed (:func:`check_source`) and refuses splits that come out different
(:func:`check_splits`: another split seed, fractions or binarization than the run's).
A comparison grid keys its cells by the loaded data's hash (:func:`data_sha256`) and reads a
dataset path made absolute (:func:`resolve_source`), so every process reads the same file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ppl_vae.data.checks import DataError
from ppl_vae.data.sources import BUILTIN_DATASETS, RawData, load
from ppl_vae.data.transforms import SPLIT_NAMES

_BLOCK = 1 << 20


def source_record(source: Any) -> dict[str, str]:
    """``{"path": absolute path, "sha256": content hash}`` for a dataset file or folder; ``{}``
    for a built-in name (its data come with the package) or anything that is not a path."""
    if not isinstance(source, str | os.PathLike):
        return {}
    if isinstance(source, str) and source.lower() in BUILTIN_DATASETS:
        return {}
    path = Path(os.path.abspath(source))
    if not path.exists():
        return {}
    return {"path": str(path), "sha256": content_sha256(path)}


def content_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's relative file names and bytes in order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(_BLOCK), b""):
                digest.update(block)
    return digest.hexdigest()


def check_source(record: dict[str, Any], where: str) -> str:
    """The recorded dataset path to load, after checking that its content is unchanged;
    :class:`DataError` naming the file and the fix otherwise (``where``: the record's file)."""
    path = Path(record["path"])
    if not path.exists():
        raise DataError(f"the dataset {path} recorded in {where} is missing; put the file back "
                        "there (the run was trained on it), or train a new run on other data")
    found = content_sha256(path)
    if found != record.get("sha256"):
        raise DataError(f"the dataset {path} changed since the run was trained on it (SHA-256 "
                        f"{found[:12]}…, {where} records {str(record.get('sha256'))[:12]}…); "
                        "restore the original file, or train a new run on the new data")
    return str(path)


def arrays_sha256(named: Any) -> str:
    """SHA-256 of ``(name, array)`` pairs: each array's name, shape, dtype and bytes, in order
    (``None`` arrays are skipped)."""
    digest = hashlib.sha256()
    for name, array in named:
        if array is not None:
            digest.update(f"{name}{array.shape}{array.dtype}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def splits_digest(splits: Any) -> str:
    """SHA-256 of the prepared train, valid and test arrays and labels."""
    return arrays_sha256((name, array) for name in SPLIT_NAMES
                         for array in (getattr(splits, name),
                                       getattr(splits, f"{name}_labels", None)))


def data_sha256(raw: RawData) -> str:
    """SHA-256 of loaded data (values and labels): names the data, not the file, so the same
    built-in set hashes the same on every node."""
    return arrays_sha256((("values", raw.values), ("labels", raw.labels)))


def dataset_sha256(source: str, *, images_key: str | None = None,
                   labels_key: str | None = None) -> str:
    """:func:`data_sha256` of the dataset ``source`` as :func:`ppl_vae.data.sources.load`
    reads it (with the ``.npz`` array names given)."""
    return data_sha256(load(source, images_key=images_key, labels_key=labels_key))


def resolve_source(source: str) -> str:
    """A built-in name as given; a path made absolute, so every process reads the same file
    whatever its working folder."""
    if source.lower() in BUILTIN_DATASETS:
        return source
    return os.path.abspath(Path(source).expanduser())


def check_splits(splits: Any, recorded: str | None, where: str) -> None:
    """Refuse rebuilt splits that differ from the ones the run was trained on."""
    if recorded is not None and splits_digest(splits) != recorded:
        raise DataError(f"the data rebuilt from {where} differ from the data the run was "
                        "trained on (another split seed, fractions, binarization or source "
                        f"than recorded when it was trained); restore the original 'data' "
                        f"settings in {where}, or train a new run")
