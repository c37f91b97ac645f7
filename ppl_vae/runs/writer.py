"""The one writer of a run folder: an OS lock for its life; new runs built aside, swapped in.

For a run folder ``runs/NAME`` the writer keeps a hidden sibling ``runs/.NAME.ppl-vae/``::

    lock          the run's readers-writer lock (:mod:`ppl_vae.runs.lock`): held exclusively
                  while a process trains into NAME, shared by the commands that read NAME
                  (:class:`ppl_vae.runs.outputs.OutputWriter`); the OS drops it when the
                  process ends, even by kill -9, so a stale lock is simply taken over
    holder.json   who holds the lock (pid, host, command, start time), for the refusal
    new/          a new run (fresh or ``overwrite``) while it is built: its spec, run.json,
                  parameters and training up to its first checkpoint
    old/          the replaced run, only for the moment of the swap

Same parent, same filesystem: the swap is two renames. A new run is renamed to NAME only after
its first checkpoint is on disk (:meth:`RunWriter.commit`). Until then NAME is untouched, and a
new run that fails (a NaN, an exception, Ctrl-C, kill -9) never reaches it: the old run stays
byte for byte as it was. At the swap the old run goes to ``old/`` and is **deleted** once the
new one is in place, so results computed from the old parameters (metrics, figures,
diagnostics, variance studies) do not survive into the new run. A process killed between the
two renames leaves the old run in ``old/``; the next writer puts it back before anything else.
The folder ``.NAME.ppl-vae/`` itself stays (removing a lock file others may have opened would
let two processes hold "the" lock).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ppl_vae.io import FileReadError, fsync_dir, read_json, write_json
from ppl_vae.runs.layout import RunLockedError, check_replaceable, check_run_location
from ppl_vae.runs.lock import FolderLock
from ppl_vae.runs.run import create_run

WRITER_SUFFIX = ".ppl-vae"
LOCK_FILE = "lock"
HOLDER_FILE = "holder.json"
NEW_DIR = "new"
OLD_DIR = "old"


def writer_home(path: str | Path) -> Path:
    """The hidden sibling folder that holds ``path``'s lock and its runs in the making; of the
    folder a symbolic link points to, so that every way of naming a run finds one lock."""
    path = Path(os.path.realpath(path))
    return path.parent / f".{path.name}{WRITER_SUFFIX}"


class RunWriter:
    """Context manager: the lock on a run folder, and the transaction that creates a run.

    >>> with RunWriter("runs/tiny") as writer:          # doctest: +SKIP
    ...     staging = writer.create(vae, config, overwrite=True)
    ...     ...                                         # train into staging
    ...     writer.commit()                             # after the first checkpoint
    """

    def __init__(self, path: str | Path) -> None:
        self.path = check_run_location(path)
        self.home = writer_home(self.path)
        self.staging = self.home / NEW_DIR
        self._lock = FolderLock(self.home / LOCK_FILE, shared=False)
        self._overwrite = False
        self._staged = False

    def __enter__(self) -> RunWriter:
        self.home.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            raise RunLockedError(self._refusal())
        try:
            write_json(self.home / HOLDER_FILE, {
                "pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join(sys.argv) or "python",
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
            self._recover()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._staged:  # a new run that never reached its first checkpoint
                shutil.rmtree(self.staging, ignore_errors=True)
                self._staged = False
            (self.home / HOLDER_FILE).unlink(missing_ok=True)
        finally:
            self._lock.release()

    def stage(self, *, overwrite: bool) -> Path:
        """An empty staging folder for a new run; ``self.path`` is checked first
        (:func:`check_replaceable`) and not touched."""
        check_replaceable(self.path, overwrite=overwrite)
        self._overwrite = overwrite
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir()
        self._staged = True
        return self.staging

    def create(self, vae: Any, config: dict[str, Any], *, overwrite: bool) -> Path:
        """Write a new run (spec, run.json, initial parameters) into the staging folder."""
        return create_run(self.stage(overwrite=overwrite), vae, config)

    def commit(self) -> Path:
        """Swap the staged run in for ``self.path`` (deleting the old run); returns the path."""
        check_replaceable(self.path, overwrite=self._overwrite)  # nothing new appeared there
        old = self.home / OLD_DIR
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.staging, self.path)
        self._staged = False
        fsync_dir(self.path.parent)
        shutil.rmtree(old, ignore_errors=True)
        return self.path

    def _recover(self) -> None:
        """Undo what a writer killed mid-way left (we hold the lock, so it is dead)."""
        old = self.home / OLD_DIR
        if old.exists():
            if self.path.exists():  # killed while deleting the replaced run
                shutil.rmtree(old)
            else:  # killed between the two renames: the old run goes back
                os.replace(old, self.path)
        if self.staging.exists():  # a new run that never reached its first checkpoint
            shutil.rmtree(self.staging)

    def _refusal(self) -> str:
        if self._lock.readers_only():
            return (f"{self.path} is being read by another ppl-vae command (evaluate, sample, "
                    "variance, diagnose or report); wait for it to finish, then train again. "
                    "Training while it reads would mix old and new parameters in its results "
                    f"(lock: {self.home / LOCK_FILE})")
        try:
            holder = read_json(self.home / HOLDER_FILE)
            who = (f"process {holder['pid']} on {holder['host']} ({holder['command']}, "
                   f"since {holder['started']})")
        except (FileReadError, KeyError, TypeError):
            who = "another process"
        return (f"{self.path} is being written by {who}; wait for it to finish or stop it. "
                f"Two writers of one run folder would corrupt it (lock: "
                f"{self.home / LOCK_FILE})")
