"""The one writer of what the commands derive from runs: metrics, samples, diagnostics,
variance studies and reports.

:class:`OutputWriter` is used around everything a reading command does::

    with OutputWriter(out, command="sample", runs=[run_dir], overwrite=False) as writer:
        run = load_run(run_dir)                   # under the run's shared lock
        save_image_grid(writer.path(SAMPLES_FILE), ...)

On entry it

* takes each run's lock **shared** (:mod:`ppl_vae.runs.lock`): readers run together, and
  ``ppl-vae train`` (which takes it exclusively) can neither start while they read nor be
  read from while it trains, so a result never mixes two parameter sets;
* records each run's id and the step of the parameters it holds (:attr:`sources`), read
  under the lock, so the step recorded is the step of the parameters used;
* refuses an output folder holding files ppl-vae did not write (unless ``overwrite``),
  before anything is computed, so nothing there is touched. A run folder and its
  ``variance/`` are exempt: their file names are the run-folder contract's
  (:mod:`ppl_vae.runs.layout`).

:meth:`OutputWriter.path` checks that a file stays inside the output folder
(:func:`~ppl_vae.runs.layout.contained`). On exit, every file the command created or changed
in the folder is recorded in the folder's ``outputs.json`` with its SHA-256, the command and
the sources: how the next command knows the files are ppl-vae's, and which run and step
they came from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppl_vae.io import FileReadError, read_json, write_json
from ppl_vae.runs.checkpoints import training_progress
from ppl_vae.runs.layout import (
    CONFIG_FILE,
    OUTPUTS_FILE,
    VARIANCE_DIR,
    NotARunError,
    RunExistsError,
    RunLockedError,
    contained,
    is_run,
    require_run,
)
from ppl_vae.runs.lock import FolderLock
from ppl_vae.runs.writer import LOCK_FILE, writer_home


class OutputWriter:
    """Context manager: shared locks on ``runs``, the guard of ``folder``, and the record of
    what ``command`` wrote there (see the module docstring)."""

    def __init__(self, folder: str | Path, *, command: str, runs: Sequence[str | Path] = (),
                 overwrite: bool = False) -> None:
        self.folder = Path(folder)
        self.command = command
        self.runs = [Path(r) for r in runs]
        self.overwrite = overwrite
        self.sources: list[dict[str, Any]] = []
        self._locks: list[FolderLock] = []
        self._before: dict[str, tuple[int, int, int]] = {}

    def __enter__(self) -> OutputWriter:
        for run in self.runs:
            require_run(run)
        self._check_folder()  # before the locks: a refusal creates nothing, not a lock file
        try:
            for run in self.runs:
                self._lock(run)
                self.sources.append(_source(run))
        except BaseException:
            self._release()
            raise
        self._before = _snapshot(self.folder)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._record()
        finally:
            self._release()

    def path(self, name: str | Path) -> Path:
        """``folder / name``, checked to lie inside ``folder``; parent folders are created."""
        path = contained(self.folder, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def step(self, run: str | Path | None = None) -> int:
        """The checkpoint step of the parameters of ``run`` (default: the first) as read under
        its lock (0 for a run without a checkpoint)."""
        index = 0 if run is None else self.runs.index(Path(run))
        return self.sources[index]["checkpoint_step"]

    # ------------------------------------------------------------------ internals

    def _lock(self, run: Path) -> None:
        home = writer_home(run)
        home.mkdir(exist_ok=True)
        lock = FolderLock(home / LOCK_FILE, shared=True)
        if not lock.acquire():
            raise RunLockedError(f"{run} is being trained (ppl-vae train holds its lock "
                                 f"{home / LOCK_FILE}); wait for the training to finish, then "
                                 f"run ppl-vae {self.command} again. Reading it now could mix "
                                 "the old and the new parameters")
        self._locks.append(lock)

    def _check_folder(self) -> None:
        folder = self.folder  # a symbolic link to a folder is followed, here and in path()
        if folder.exists() and not folder.is_dir():
            raise NotARunError(f"{folder} is a file, not an output folder; nothing was "
                               "touched. Choose a new or empty folder")
        if self.overwrite or not folder.exists() or _run_area(folder):
            return
        recorded = _manifest(folder)
        foreign = [name for name in sorted(_snapshot(folder))
                   if recorded.get(name, {}).get("sha256") != _sha256(folder / name)]
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise RunExistsError(
                f"{folder} holds {len(foreign)} file(s) ppl-vae did not write ({shown}); "
                f"nothing was touched. Choose a new or empty folder with --out, or pass "
                f"--overwrite to let ppl-vae {self.command} write over its own file names "
                "there (other files stay)")

    def _record(self) -> None:
        if not self.folder.is_dir():
            return
        after = _snapshot(self.folder)
        changed = [name for name, stat in after.items() if self._before.get(name) != stat]
        if not changed:
            return
        recorded = _manifest(self.folder)
        for name in changed:
            recorded[name] = {"command": self.command, "sha256": _sha256(self.folder / name),
                              "sources": self.sources}
        write_json(self.folder / OUTPUTS_FILE, recorded)

    def _release(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks = []


def _source(run: Path) -> dict[str, Any]:
    """What a derived file records about the run it came from."""
    try:
        config = read_json(run / CONFIG_FILE)
    except FileReadError:
        config = None
    run_id = config.get("run_id") if isinstance(config, dict) else None
    progress = training_progress(run)
    return {"run": str(run.resolve()), "run_id": run_id,
            "checkpoint_step": 0 if progress is None else progress.params_step}


def _run_area(folder: Path) -> bool:
    """A run folder, or its ``variance/`` folder: file names the run-folder contract owns."""
    return is_run(folder) or (folder.name == VARIANCE_DIR and is_run(folder.parent))


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """{relative path: (size, mtime_ns, inode)} of every entry under ``folder`` that is not a
    folder (links not followed, but listed), without the manifest."""
    if not folder.is_dir():
        return {}
    found = {}
    for root, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if d not in links]
        for name in files + links:
            path = Path(root) / name
            rel = str(path.relative_to(folder))
            if rel == OUTPUTS_FILE:
                continue
            stat = path.lstat()
            found[rel] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return found


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / OUTPUTS_FILE
    if not path.exists():
        return {}
    try:
        recorded = read_json(path)
    except FileReadError:
        return {}  # a damaged record vouches for nothing: every file counts as foreign
    return recorded if isinstance(recorded, dict) else {}


def _sha256(path: Path) -> str | None:
    if path.is_symlink() or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()
