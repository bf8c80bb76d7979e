"""Durable, atomic file replacement: a reader sees the old file or the new one, never
half of one, and after a crash the new one is there if the call returned.

Callers map ``OSError`` to their own typed error (provisioning, the state store, a
device's privacy ledger each say what failed in their own terms).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data``: a temporary file beside it (created ``0600``, then
    given ``mode``), fsynced, renamed over ``path``, and the folder fsynced.

    Raises:
        OSError: the folder is not writable, or writing or renaming failed (no temporary
            file is left behind).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file is durable only once its folder
    is synced)."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open a folder to sync it
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
