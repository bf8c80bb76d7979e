"""The content-addressed blob store: round trips, corruption caught on read, atomic puts."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import SerializationError, StoreError
from fedhive.server.store import BlobStore


def test_put_files_bytes_under_their_sha256_and_get_returns_them(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = b"model bytes \x00\x01\x02"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "blobs" / digest[:2] / digest[2:]).read_bytes() == data
    assert store.has(digest)
    assert store.get(digest) == data


def test_putting_the_same_content_again_is_a_no_op(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"same")
    path = tmp_path / digest[:2] / digest[2:]
    before = path.stat()
    assert store.put(b"same") == digest
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in path.parent.iterdir()] == [digest[2:]]  # no temp file left


def test_a_known_digest_files_the_bytes_without_hashing_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)
    data = b"a model the caller already hashed"
    digest = hashlib.sha256(data).hexdigest()
    hashed: list[bytes] = []
    sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda d=b"": hashed.append(d) or sha256(d))
    assert store.put(data, digest=digest) == digest
    assert hashed == []
    monkeypatch.undo()
    assert store.get(digest) == data


def test_a_known_digest_naming_a_stored_blob_of_another_size_is_refused(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"the stored blob")
    with pytest.raises(StoreError, match="not theirs"):
        store.put(b"other bytes, given that blob's digest", digest=digest)
    assert store.get(digest) == b"the stored blob"


def test_a_wrong_known_digest_for_a_new_blob_is_caught_on_read(tmp_path: Path) -> None:
    """Taken on trust when new (checking it is hashing again), never served: every read
    rehashes."""
    store = BlobStore(tmp_path)
    wrong = hashlib.sha256(b"something else").hexdigest()
    store.put(b"these bytes", digest=wrong)
    with pytest.raises(SerializationError, match="corrupt"):
        store.get(wrong)


def test_empty_bytes_are_a_blob_too(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.get(store.put(b"")) == b""


def test_a_changed_blob_is_refused_on_read(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"original content")
    (tmp_path / digest[:2] / digest[2:]).write_bytes(b"original contenT")
    with pytest.raises(SerializationError, match="corrupt"):
        store.get(digest)


def test_a_truncated_blob_is_refused_on_read(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"x" * 1000)
    path = tmp_path / digest[:2] / digest[2:]
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(SerializationError):
        store.get(digest)


def test_a_missing_blob_is_a_store_error(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has(digest)
    with pytest.raises(StoreError, match="missing"):
        store.get(digest)


@pytest.mark.parametrize(
    "digest",
    ["../../etc/passwd", "AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, "/" + "a" * 63],
)
def test_a_string_that_is_not_a_digest_never_becomes_a_path(tmp_path: Path, digest: str) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(SerializationError, match="digest"):
        store.get(digest)
    with pytest.raises(SerializationError):
        store.has(digest)


@settings(max_examples=50, deadline=None)
@given(blobs=st.lists(st.binary(max_size=256), max_size=8))
def test_every_put_blob_reads_back_identically(blobs: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as root:
        store = BlobStore(root)
        digests = [store.put(data) for data in blobs]
        assert [store.get(d) for d in digests] == blobs
        stored = {p.name for p in Path(root).rglob("*") if p.is_file()}
        assert len(stored) == len(set(blobs))


# The child writes the blob but is killed just before the rename onto its final name.
_KILLED_BEFORE_RENAME = textwrap.dedent(
    """
    import os, signal, sys
    from fedhive.server.store import blobs

    def die(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)

    blobs.os.replace = die
    blobs.BlobStore(sys.argv[1]).put(b"half-written model" * 1000)
    """
)


def test_a_put_killed_before_its_rename_leaves_no_blob_under_the_final_name(
    tmp_path: Path,
) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_BEFORE_RENAME, str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    data = b"half-written model" * 1000
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(tmp_path)
    assert not store.has(digest)
    leftovers = [p.name for p in (tmp_path / digest[:2]).iterdir()]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(".tmp-")
    assert store.put(data) == digest
    assert store.get(digest) == data
