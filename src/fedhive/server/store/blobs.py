"""A content-addressed blob store: bytes filed under their SHA-256, checked on read.

A blob with digest ``abcdef…`` lives at ``ROOT/ab/cdef…``. It is written to a temporary
file in the same folder, flushed and fsync'd, then renamed onto its final name with
``os.replace`` (atomic on POSIX) and the folder fsync'd, so a crash never leaves a
half-written blob under a final name, and a blob that a later database commit refers to
survives a power loss. Temporary files a crash leaves behind (``.tmp-*``) are never
read as blobs.

A caller that already holds the bytes' digest (the round loop's
:class:`~fedhive.core.version.ModelVersion`, made once per model by hashing its bytes)
passes it to :meth:`BlobStore.put`, which then does not hash a second time. The digest
is taken on trust when the blob is new: checking it would mean hashing again. A wrong one
would still never be served: :meth:`BlobStore.get` rehashes every blob it reads (a
mismatch is reported as corruption), and so does ``fedhive audit``. What ``put`` checks
cheaply is that the digest is a well-formed SHA-256 and that a blob already filed under
it has the same size (one stat), so a wrong digest naming an existing blob is refused
rather than silently taken as "already stored".
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fedhive import durable
from fedhive.core.canonical import is_sha256_hex
from fedhive.errors import SerializationError, StoreError

_BLOB_MODE = 0o600  # what mkstemp gave blobs before: owner-only


class BlobStore:
    """Bytes stored once per content, addressed by their hex SHA-256."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Open (and create when missing) the blob folder ``root``.

        Raises:
            StoreError: the folder cannot be created.
        """
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"blob store: cannot create {self.root}: {exc}") from exc

    def put(self, data: bytes, *, digest: str | None = None) -> str:
        """Store ``data`` durably and return its hex SHA-256 (a no-op if already stored).

        Args:
            data: the bytes.
            digest: their hex SHA-256 when the caller already has it (taken on trust,
                not recomputed; see the module); None: hash ``data`` here.

        Raises:
            StoreError: the blob cannot be written (disk full, permissions), or a blob
                of another size is already filed under the digest (``digest`` is not
                these bytes', or the stored blob was truncated).
            SerializationError: ``digest`` is not a lowercase hex SHA-256.
        """
        if digest is None:
            digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        try:
            stored = path.stat().st_size
        except FileNotFoundError:
            stored = None
        except OSError as exc:
            raise StoreError(f"blob store: cannot read blob {digest}: {exc}") from exc
        if stored is not None:
            if stored != len(data):
                raise StoreError(
                    f"blob store: blob {digest} holds {stored} bytes, not the {len(data)} "
                    "given: that digest is not theirs, or the stored blob is damaged"
                )
            return digest
        try:
            _write_atomically(path, bytes(data))
        except OSError as exc:
            raise StoreError(f"blob store: cannot write blob {digest}: {exc}") from exc
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes stored under ``digest``, after checking that they still hash to it.

        Raises:
            StoreError: no blob has that digest.
            SerializationError: ``digest`` is not a hex SHA-256, or the stored bytes no
                longer match it (the file was corrupted or replaced).
        """
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob store: blob {digest} is missing") from None
        except OSError as exc:
            raise StoreError(f"blob store: cannot read blob {digest}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise SerializationError(
                f"blob store: blob {digest} is corrupt (its bytes hash to {actual})"
            )
        return data

    def has(self, digest: str) -> bool:
        """Whether a blob is stored under ``digest`` (not read, so not verified).

        Raises:
            SerializationError: ``digest`` is not a hex SHA-256.
        """
        return self._path(digest).is_file()

    def _path(self, digest: str) -> Path:
        # Checked before it becomes a path: a digest never names a file outside root.
        if not is_sha256_hex(digest):
            raise SerializationError(f"not a lowercase hex SHA-256 digest: {digest!r}")
        return self.root / digest[:2] / digest[2:]


def _write_atomically(path: Path, data: bytes) -> None:
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(exist_ok=True)
        durable.fsync_dir(folder.parent)  # make the new folder's entry durable too
    durable.write_atomic(path, data, mode=_BLOB_MODE)
