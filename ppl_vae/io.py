"""Files a user keeps: atomic writes, parameters as safetensors, never pickle.

Every write goes to a temporary file in the target's folder, is flushed and fsynced, then
renamed over the target (``os.replace`` is atomic on POSIX), so a crash leaves either the
old file or the new one, never a torn one. The file gets the permissions an ordinary
``open(path, "w")`` would give it (0666 less the umask), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save


class FileReadError(RuntimeError):
    """A file that is missing, unreadable or not in its expected format; the message names it."""


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # name the file the caller wrote, not the temporary one
        raise type(err)(err.errno, err.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:  # e.g. a full disk: name the file, and leave no temporary one
        Path(tmp).unlink(missing_ok=True)
        if err.filename is not None:
            raise
        raise type(err)(err.errno, err.strerror or str(err), str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (renames into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        raise type(err)(err.errno, err.strerror or str(err), str(path)) from None
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_csv_tables(result: Any, names: Any, folder: str | Path) -> list[Path]:
    """Write each DataFrame attribute ``name`` of ``result`` to ``folder/name.csv``
    atomically (an empty table keeps its header); return the paths."""
    paths = []
    for name in names:
        path = Path(folder) / f"{name}.csv"
        atomic_write_text(path, getattr(result, name).to_csv(index=False))
        paths.append(path)
    return paths


def describe_entries(folder: str | Path) -> str:
    """``"N entries (a, b, c, ...)"`` for a folder's entries, sorted; ``""`` when empty."""
    entries = sorted(p.name for p in Path(folder).iterdir())
    if not entries:
        return ""
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    return f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'} ({shown})"


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileReadError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise FileReadError(f"{path}: not valid JSON ({err}); the file is corrupt") from None


def write_toml(path: str | Path, obj: dict[str, Any]) -> None:
    atomic_write_text(path, tomli_w.dumps(obj))


def arrays_bytes(arrays: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """Named arrays serialized as safetensors (the bytes :func:`save_arrays` writes)."""
    # np.ascontiguousarray would turn 0-d arrays into shape (1,); asarray(order="C") does not.
    contiguous = {name: np.asarray(v, order="C") for name, v in arrays.items()}
    return st_save(contiguous, metadata=metadata)


def save_arrays(path: str | Path, arrays: dict[str, Any],
                metadata: dict[str, str] | None = None) -> None:
    """Save named arrays as safetensors, atomically."""
    atomic_write_bytes(path, arrays_bytes(arrays, metadata))


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load named arrays from safetensors (no code is ever executed from the file)."""
    path = Path(path)
    try:
        return st_load(path.read_bytes())
    except FileNotFoundError:
        raise FileReadError(f"{path}: file not found") from None
    except (SafetensorError, ValueError) as err:
        raise FileReadError(f"{path}: not a readable safetensors file ({err}); "
                              "it is corrupt or was not written by ppl_vae") from None
