"""Chunked payloads: reassembly equals the original; gaps, reorders, excess, truncation
and huge declared sizes are typed errors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedhive.errors import SerializationError, ValidationError
from fedhive.transport.chunks import Reassembler, split


@given(data=st.binary(max_size=5000), size=st.integers(1, 700))
def test_split_then_reassemble_is_identity(data: bytes, size: int) -> None:
    r = Reassembler(
        declared_size=len(data), max_size=10_000, sha256=hashlib.sha256(data).hexdigest()
    )
    for offset, chunk in split(data, size):
        assert len(chunk) <= size
        r.add(offset, chunk)
    assert r.finish() == data


@given(data=st.binary(min_size=2, max_size=300), size=st.integers(1, 50), pick=st.data())
def test_reordered_or_dropped_chunks_are_refused(
    data: bytes, size: int, pick: st.DataObject
) -> None:
    chunks = list(split(data, size))
    if len(chunks) < 2:
        return
    i = pick.draw(st.integers(0, len(chunks) - 2))
    swapped = [*chunks[:i], chunks[i + 1], chunks[i], *chunks[i + 2 :]]
    with pytest.raises(SerializationError, match="missing or reordered"):
        reassemble(len(data), swapped)
    with pytest.raises(SerializationError, match=r"missing or reordered|truncated"):
        reassemble(len(data), [*chunks[:i], *chunks[i + 1 :]])


def reassemble(size: int, chunks: list[tuple[int, bytes]]) -> bytes:
    r = Reassembler(declared_size=size, max_size=size)
    for offset, chunk in chunks:
        r.add(offset, chunk)
    return r.finish()


def test_more_than_declared_is_refused() -> None:
    r = Reassembler(declared_size=3, max_size=10)
    with pytest.raises(SerializationError, match="more than the 3 declared"):
        r.add(0, b"abcd")


@given(declared=st.integers(min_value=101, max_value=2**64))
def test_a_huge_declared_size_is_refused_before_any_data(declared: int) -> None:
    with pytest.raises(ValidationError, match="the limit is 100 bytes"):
        Reassembler(declared_size=declared, max_size=100)


def test_a_wrong_digest_is_refused() -> None:
    r = Reassembler(declared_size=3, max_size=3, sha256=hashlib.sha256(b"abd").hexdigest())
    r.add(0, b"abc")
    with pytest.raises(ValidationError, match="differs from the declared"):
        r.finish()
