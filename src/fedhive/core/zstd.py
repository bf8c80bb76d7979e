"""zstd, and a decompression bounded by the size the caller expects.

Both users know a payload's decompressed size before decompressing it (an update's
follows from the layout and the pipeline, a model delta's from the model it applies
to), so decompression reads at most that many bytes plus one: a
"zstd bomb" (a small frame that expands to gigabytes) is refused after that many bytes,
never held in memory whole. The frame must declare its content size (our encoder always
writes it), and it must be the expected one.
"""

from __future__ import annotations

import io

import zstandard

from fedhive.errors import CodecError


def compress(body: bytes, level: int) -> bytes:
    """One zstd frame of ``body``, with its content size in the frame header."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(body)


def decompress(frame: bytes, expected_size: int) -> bytes:
    """The ``expected_size`` bytes ``frame`` holds.

    Raises:
        CodecError: not one zstd frame, a frame that does not declare exactly
            ``expected_size`` bytes, or one that holds more or fewer.
    """
    try:
        declared = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd body: not a zstd frame: {exc}") from None
    if declared != expected_size:
        raise CodecError(
            f"zstd body declares {declared} bytes (-1: unknown), expected exactly {expected_size}"
        )
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame), read_across_frames=False)
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= expected_size:
            chunk = reader.read(expected_size + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd body: corrupted frame: {exc}") from None
    if size != expected_size:
        raise CodecError(f"zstd body holds {size} bytes or more, expected {expected_size}")
    return b"".join(chunks)
