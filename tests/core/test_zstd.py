"""zstd: lossless, and decompression bounded by the size the caller expects."""

from __future__ import annotations

import pytest
import zstandard

from fedhive.core import zstd
from fedhive.errors import CodecError


@pytest.mark.parametrize("body", [b"", b"abc", bytes(range(256)) * 40])
def test_round_trip_is_exact(body: bytes) -> None:
    assert zstd.decompress(zstd.compress(body, 3), len(body)) == body


def test_a_bomb_is_refused_by_its_declared_size() -> None:
    bomb = zstd.compress(bytes(50 << 20), 3)
    assert len(bomb) < 4096
    with pytest.raises(CodecError, match="declares"):
        zstd.decompress(bomb, 1000)


def test_a_frame_without_a_declared_size_is_refused() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1000))
    with pytest.raises(CodecError, match="declares"):
        zstd.decompress(frame, 1000)


def test_a_truncated_frame_is_refused() -> None:
    frame = zstd.compress(bytes(range(256)) * 40, 3)
    with pytest.raises(CodecError):
        zstd.decompress(frame[:-5], 256 * 40)


@pytest.mark.parametrize("frame", [b"", b"\x00" * 8, b"not zstd at all"])
def test_non_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(CodecError):
        zstd.decompress(frame, 10)
