"""Reading and writing provisioning files so that secrets are never exposed.

Private keys are created with ``O_CREAT | O_EXCL`` and mode ``0600``, so they are never
readable by others, not even for the moment between creating and ``chmod``. Every other
file is written to a temporary file beside it and moved into place with ``os.replace``,
so a reader (a running server re-reading its CRL) sees either the old or the new file,
never half of one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from fedhive import durable
from fedhive.errors import ConfigError

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def read_bytes(path: Path) -> bytes:
    """Read a whole file; a missing or unreadable file is a ConfigError naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` holding secret ``data``, readable by its owner only.

    Raises:
        ConfigError: the file already exists or cannot be created.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create ({exc.strerror or exc})") from None
    try:
        # The umask can only remove bits; fchmod makes the mode exactly 0600 regardless.
        os.fchmod(fd, PRIVATE_MODE)
        with os.fdopen(fd, "wb") as file:
            fd = -1  # the file object owns it now
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()  # no half-written key left behind
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file, then ``os.replace``).

    Raises:
        ConfigError: the folder is not writable.
    """
    try:
        durable.write_atomic(path, data, mode=mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from None
