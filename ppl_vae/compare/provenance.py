"""Which data a cell was trained on: the dataset's source, resolved, and its content hash.

The hash is the SHA-256 of the arrays as loaded (values and labels with their shapes and
dtypes), so it names the data, not the file: the same built-in set hashes the same on every
node, and a replaced, truncated or edited dataset file hashes differently. It is part of the
cell's key (a grid re-run on changed data trains new cells and says so), and a worker whose
copy of the data differs from the driver's refuses the cell.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ppl_vae.data.sources import BUILTIN_DATASETS, RawData, load


def resolve_source(source: str) -> str:
    """A built-in name as given; a path made absolute, so every process reads the same
    file whatever its working folder."""
    if source.lower() in BUILTIN_DATASETS:
        return source
    return os.path.abspath(Path(source).expanduser())


def dataset_sha256(source: str, *, images_key: str | None = None,
                   labels_key: str | None = None) -> str:
    """SHA-256 of the dataset ``source`` as :func:`ppl_vae.data.sources.load` reads it (with
    the ``.npz`` array names given)."""
    return data_sha256(load(source, images_key=images_key, labels_key=labels_key))


def data_sha256(raw: RawData) -> str:
    """SHA-256 of loaded data: values and labels with their dtypes and shapes."""
    digest = hashlib.sha256()
    for array in (raw.values, raw.labels):
        if array is None:
            digest.update(b"none")
            continue
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes(order="C"))
    return digest.hexdigest()
