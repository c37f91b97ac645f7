"""A finished cell on disk: ``cell.json`` lists every result file with its SHA-256.

A cell folder is *done* only when ``cell.json`` parses, names the cell's key, and every file
it lists is present with the recorded digest (:func:`cell_problem`). A cell killed while its
files were written, a truncated or edited ``per_datapoint.csv``, a missing ``params`` file:
none of them is taken as done, and the grid runs the cell again. ``cell.json`` is written
last and every write is atomic (temp file + ``os.replace``), so a reader sees either the old
complete cell or none.

The result files are the cell's per-datapoint table and the small files of its run folder
(:data:`ppl_vae.compare.cells.RESULT_FILES`: spec, run.json, params, history, metrics,
samples); checkpoints and the reports written later from them are not listed. A Ray task
trains in a private temporary folder and hands them back as :class:`CellFiles` (bytes,
through Ray's object store), which the driver writes with :func:`unpack`: the nodes of a
cluster share no folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ppl_vae.io import atomic_write_bytes

CELL_FILE = "cell.json"


@dataclass(frozen=True, eq=False)
class CellFiles:
    """The result files of one cell (plain names → bytes), ``cell.json`` among them."""

    key: str
    files: dict[str, bytes]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def result_files(folder: str | Path, names: Sequence[str]) -> dict[str, str]:
    """The SHA-256 of each of the files ``names`` present in ``folder`` (regular files, not
    links), by name."""
    paths = [Path(folder) / name for name in names]
    return {p.name: sha256_bytes(p.read_bytes()) for p in paths
            if p.is_file() and not p.is_symlink()}


def cell_problem(folder: str | Path, key: str) -> str | None:
    """Why ``folder`` is not a finished cell ``key`` (None when it is): no ``cell.json``,
    an unreadable one, another key, or a listed file missing or not matching its digest."""
    folder = Path(folder)
    try:
        record = json.loads((folder / CELL_FILE).read_text())
    except FileNotFoundError:
        return "not finished"
    except (OSError, ValueError) as err:
        return f"{CELL_FILE} is unreadable ({err})"
    if not isinstance(record, dict) or record.get("key") != key:
        return f"{CELL_FILE} belongs to another cell"
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        return f"{CELL_FILE} lists no result files (written by an older ppl_vae)"
    for name, digest in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_bytes(path.read_bytes()) != digest:
            return f"{name} does not match its SHA-256 in {CELL_FILE} (truncated or edited)"
    return None


def pack(folder: str | Path, key: str) -> CellFiles:
    """The finished cell in ``folder`` as bytes (the files ``cell.json`` lists, and it)."""
    folder = Path(folder)
    problem = cell_problem(folder, key)
    if problem is not None:
        raise RuntimeError(f"cell {key} in {folder}: {problem}")
    names = [*json.loads((folder / CELL_FILE).read_text())["files"], CELL_FILE]
    return CellFiles(key, {name: (folder / name).read_bytes() for name in names})


def unpack(folder: str | Path, cell_files: CellFiles) -> Path:
    """Write a packed cell into ``folder``: any old ``cell.json`` removed first, the result
    files atomically, ``cell.json`` last; then check the cell is done."""
    folder = Path(folder)
    for name in cell_files.files:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"cell {cell_files.key} returned a file named {name!r}; "
                             "result files are plain names")
    (folder / CELL_FILE).unlink(missing_ok=True)
    for name, data in cell_files.files.items():
        if name != CELL_FILE:
            atomic_write_bytes(folder / name, data)
    atomic_write_bytes(folder / CELL_FILE, cell_files.files[CELL_FILE])
    problem = cell_problem(folder, cell_files.key)
    if problem is not None:
        raise RuntimeError(f"cell {cell_files.key} written to {folder}: {problem}")
    return folder
