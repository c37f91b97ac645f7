"""The readers-writer lock of a run folder: ``flock(2)`` on one lock file, shared or exclusive.

``filelock`` takes only exclusive locks, so the run's lock is ``fcntl.flock`` itself: the
commands that read a run (``evaluate``, ``sample``, ``variance``, ``diagnose``, ``report``)
hold ``LOCK_SH`` together, ``train`` holds ``LOCK_EX`` alone. Neither waits: a lock that is
taken is refused at once (``LOCK_NB``), with a message saying who holds it. The OS drops a
``flock`` when its process ends, even by kill -9, so a stale lock is simply taken over.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FolderLock:
    """A non-blocking ``flock`` on ``path`` (created if missing): ``shared`` for readers."""

    def __init__(self, path: str | Path, *, shared: bool) -> None:
        self.path = Path(path)
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False (holding nothing) when another process holds a conflicting
        one."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def readers_only(self) -> bool:
        """Whether the lock is free or held by readers only (a shared lock can be taken)."""
        probe = FolderLock(self.path, shared=True)
        if probe.acquire():
            probe.release()
            return True
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
