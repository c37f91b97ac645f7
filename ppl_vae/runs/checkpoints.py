"""Checkpoint folders: written atomically, verified on load, no pickle anywhere.

Layout under a run directory::

    checkpoints/
      latest                  name of the newest complete checkpoint (replaced atomically)
      step-00000500/
        params.safetensors    the model's parameters, flat names
        state.safetensors     optimizer moments, RNG state and other arrays of the engine
        state.json            step, elapsed time and the non-array part of the engine state
        history.csv           the training history up to this step
        manifest.json         SHA-256 of every file above

A checkpoint is written into a hidden temporary folder and renamed into place only when every
file is on disk; then the run's top-level ``params.safetensors`` and ``history.csv`` are
written (their SHA-256 recorded in the checkpoint's ``state.json``); then ``latest`` is
replaced, which commits the three together: a reader refuses top-level files that do not
match ``latest`` (:func:`check_run_files`). Only then are checkpoints older than the newest
:data:`KEEP` removed, with whatever an interrupted write left. A process killed at any moment
(or a full disk) therefore leaves the previous checkpoint intact, and a torn or altered file
is caught by its checksum on load.

Optimizer state (nested dicts, lists and tuples of tensors and Python scalars) is stored with
:func:`encode_tree`: arrays go to safetensors, the structure and scalars to JSON.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppl_vae.io import (
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    load_arrays,
    read_json,
    save_arrays,
    write_json,
)
from ppl_vae.runs.layout import CHECKPOINT_DIR, HISTORY_FILE, PARAMS_FILE, CheckpointError

LATEST_FILE = "latest"
MANIFEST_FILE = "manifest.json"
STATE_ARRAYS_FILE = "state.safetensors"
STATE_FILE = "state.json"
RUN_FILES_KEY = "run_files"
FORMAT_VERSION = 1
KEEP = 2
"""Complete checkpoints kept; the older one is a fallback if the newest is damaged later."""

_PREFIX = "step-"
_TMP_PREFIX = ".tmp-"
_STEP_NAME = re.compile(r"step-\d{8}")
_TMP_NAME = re.compile(r"\.tmp-step-\d{8}-\d+")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded, verified checkpoint."""

    path: Path
    step: int
    params: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray]
    state: dict[str, Any]
    history_csv: str


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def write_checkpoint(run_dir: str | Path, step: int, *, params: Mapping[str, np.ndarray],
                     arrays: Mapping[str, np.ndarray], state: dict[str, Any],
                     history_csv: str, run_files: Mapping[str, bytes] | None = None) -> Path:
    """Write checkpoint ``step`` under ``run_dir/checkpoints`` atomically; returns its path.

    ``run_files`` (name: bytes) are the run's top-level files that go with this checkpoint
    (``params.safetensors``, ``history.csv``): their SHA-256 is recorded in its ``state.json``
    and they are written after the checkpoint folder and before ``latest``, so ``latest``
    commits the checkpoint and them together (:func:`check_run_files`)."""
    run_files = dict(run_files or {})
    state = {**state, RUN_FILES_KEY: {name: hashlib.sha256(data).hexdigest()
                                      for name, data in run_files.items()}}
    root = writable_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f"{_TMP_PREFIX}{checkpoint_name(step)}-{os.getpid()}"
    if tmp.exists() or tmp.is_symlink():
        _remove(tmp)
    tmp.mkdir()
    save_arrays(tmp / PARAMS_FILE, dict(params))
    save_arrays(tmp / STATE_ARRAYS_FILE, dict(arrays))
    write_json(tmp / STATE_FILE, {"format": FORMAT_VERSION, "step": step, **state})
    atomic_write_text(tmp / HISTORY_FILE, history_csv)
    files = (PARAMS_FILE, STATE_ARRAYS_FILE, STATE_FILE, HISTORY_FILE)
    write_json(tmp / MANIFEST_FILE, {name: _sha256(tmp / name) for name in files})
    fsync_dir(tmp)
    if final.exists() or final.is_symlink():  # the same step, from an interrupted attempt
        _remove(final)
    os.replace(tmp, final)
    fsync_dir(root)
    for name, data in run_files.items():
        atomic_write_bytes(Path(run_dir) / name, data)
    atomic_write_text(root / LATEST_FILE, final.name + "\n")
    _remove_old(root)
    return final


def writable_root(run_dir: str | Path) -> Path:
    """``run_dir/checkpoints``, refused when it is a symbolic link: training deletes old and
    torn checkpoints in it, and must never delete anything outside the run."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if root.is_symlink():
        raise CheckpointError(f"{root} is a symbolic link to {os.path.realpath(root)}; "
                              "training deletes old checkpoints in it, so it must be a real "
                              f"folder of the run: nothing was changed. Replace the link by a "
                              f"folder (move the checkpoints into {root}) and train again")
    return root


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` names, else the newest complete one, else None."""
    root = Path(run_dir) / CHECKPOINT_DIR
    pointer = root / LATEST_FILE
    if pointer.exists():
        named = root / pointer.read_text().strip()
        if _ours(named, _STEP_NAME) and (named / MANIFEST_FILE).is_file():
            return named
    done = _complete(root)
    return done[-1] if done else None


def check_run_files(run_dir: str | Path) -> None:
    """Refuse a run whose top-level parameters or history are not those its ``latest``
    checkpoint committed (a write cut short, e.g. by a full disk, or files replaced by hand):
    a reader would use one step's parameters and report another's."""
    run_dir = Path(run_dir)
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return
    recorded = read_json(latest / STATE_FILE).get(RUN_FILES_KEY) or {}
    for name, digest in recorded.items():
        path = run_dir / name
        if path.is_file() and _sha256(path) != digest:  # a missing one: its reader says so
            raise CheckpointError(
                f"{path} is not the one checkpoint {latest.name} committed (a checkpoint write "
                "cut short, e.g. by a full disk, or a file replaced or damaged): its step is "
                f"unknown, so nothing reads it. Continue the run with ppl-vae train SPEC --out "
                f"{run_dir} --resume (it rewrites {name} from the checkpoint), or train it "
                "again")


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run's training stands, from its newest complete checkpoint.

    ``step``: the last trained step (the checkpoint's); ``params_step``: the step of the
    parameters the run keeps in ``params.safetensors`` — the best validation step under
    ``select = "best-valid"``, else ``step``; ``stopped_early``: patience ended the training.
    """

    step: int
    params_step: int
    stopped_early: bool


def training_progress(run_dir: str | Path) -> TrainingProgress | None:
    """The run's :class:`TrainingProgress`, or None for a run without a checkpoint. The one
    answer to "which step are the parameters at" (``params.safetensors`` and ``history.csv``
    are rewritten with each checkpoint)."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return None
    state = read_json(latest / STATE_FILE)
    step = int(state.get("step", 0))
    selection = state.get("selection") or {}
    kept = selection.get("best_step") if selection.get("kept_best") else None
    patience = selection.get("patience")
    return TrainingProgress(step=step, params_step=step if kept is None else int(kept),
                            stopped_early=patience is not None
                            and selection.get("bad_evaluations", 0) >= patience)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint folder; a damaged one raises :class:`CheckpointError`."""
    path = Path(path)
    fallback = [p.name for p in _complete(path.parent) if p != path]
    hint = (f"; delete {path} to resume from the previous checkpoint {fallback[-1]}"
            if fallback else "; start the run again with overwrite")
    manifest = read_json(path / MANIFEST_FILE)
    for name, digest in manifest.items():
        file = path / name
        if not file.exists():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing{hint}")
        if _sha256(file) != digest:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its "
                                  f"checksum in {MANIFEST_FILE}{hint}")
    state = read_json(path / STATE_FILE)
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {state.get('format')!r}; this "
                              f"version of ppl_vae reads format {FORMAT_VERSION}")
    return Checkpoint(path=path, step=int(state["step"]), params=load_arrays(path / PARAMS_FILE),
                      arrays=load_arrays(path / STATE_ARRAYS_FILE), state=state,
                      history_csv=(path / HISTORY_FILE).read_text())


# --------------------------------------------------------------------------- nested state


def encode_tree(tree: Any, prefix: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """Split nested dicts/lists/tuples into a JSON-able skeleton and named NumPy arrays.

    Arrays (NumPy, JAX, torch) become ``{"__array__": name, "kind": "numpy" | "torch"}``;
    dicts keep key types (optimizer state uses integer keys) as ``{"__dict__": [[k, v], ...]}``.
    """
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, Mapping):
            return {"__dict__": [[k, walk(v, f"{path}/{k}")] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"__tuple__": [walk(v, f"{path}/{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, bool | int | float | str):
            return node
        torch_like = hasattr(node, "detach") and hasattr(node, "cpu")  # any Tensor subclass
        value = node.detach().cpu().numpy() if torch_like else np.asarray(node)
        arrays[path] = np.asarray(value, order="C")  # keeps 0-d arrays 0-d
        return {"__array__": path, "kind": "torch" if torch_like else "numpy"}

    return walk(tree, prefix), arrays


def decode_tree(skeleton: Any, arrays: Mapping[str, np.ndarray],
                converters: Mapping[str, Callable[[np.ndarray], Any]] | None = None) -> Any:
    """Inverse of :func:`encode_tree`; ``converters[kind]`` turns arrays back into tensors."""
    converters = converters or {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "__dict__" in node:
                return {k: walk(v) for k, v in node["__dict__"]}
            if "__tuple__" in node:
                return tuple(walk(v) for v in node["__tuple__"])
            name = node["__array__"]
            if name not in arrays:
                raise CheckpointError(f"optimizer state array {name!r} is missing")
            return converters.get(node["kind"], np.asarray)(arrays[name])
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(skeleton)


# --------------------------------------------------------------------------- helpers


def _ours(path: Path, pattern: re.Pattern[str]) -> bool:
    """A real folder (not a symbolic link) named as this module names its folders."""
    return pattern.fullmatch(path.name) is not None and not path.is_symlink() and path.is_dir()


def _complete(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if _ours(p, _STEP_NAME) and (p / MANIFEST_FILE).exists())


def _remove_old(root: Path) -> None:
    """Delete the torn writes (``.tmp-step-*``; step folders without a manifest, e.g. one
    emptied by an interrupted rewrite) and all but the newest :data:`KEEP` checkpoints. Only
    real folders with this module's names are deleted, never what a symbolic link points to."""
    for stale in root.iterdir():
        torn = _ours(stale, _STEP_NAME) and not (stale / MANIFEST_FILE).exists()
        if torn or _ours(stale, _TMP_NAME):
            shutil.rmtree(stale, ignore_errors=True)
    for old in _complete(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    """Delete ``path``: a link or file is unlinked (what it points to stays), a folder removed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

