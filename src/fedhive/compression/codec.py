"""encode and decode: an update through a pipeline to payload bytes, and back.

Only floating-point tensors are compressed. Every other tensor (integers, booleans, a
batch-norm counter) travels exactly, as its little-endian bytes, first in the body; the
lossy stage then sees the float tensors as one flat float64 vector, in layout order.

Error feedback (Seide et al., 2014, "1-bit SGD"; Stich et al., 2018, "Sparsified SGD
with memory"): a biased sparsifier (top-k, or random-k sent unscaled) keeps what it
dropped, the *residual*, and adds it to the next round's update before compressing, so
nothing is lost for good: over T rounds the decoded updates plus the final residual sum
to the inputs. The residual holds the float tensors only (same names and shapes), as
float64, and is the client's to keep between rounds. The unbiased stages (stochastic
quantization, scaled random-k) keep none: their errors average out instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedhive.compression import quantize, sparsify, wire
from fedhive.core import zstd as lossless
from fedhive.core.codecs import (
    Lossy,
    Pipeline,
    StochasticQuantization,
    TopK,
)
from fedhive.core.weights import Array, FloatVector, Layout, Weights
from fedhive.errors import CodecError, ConfigError


@dataclass(frozen=True)
class Encoded:
    """A compressed update: the payload to send, and the residual to keep (or None)."""

    payload: bytes
    residual: Weights | None


def encode(
    update: Weights,
    pipeline: Pipeline,
    *,
    rng: np.random.Generator,
    residual: Weights | None,
) -> Encoded:
    """Compress ``update`` with ``pipeline``; ``residual`` is the last round's (or None).

    ``rng`` drives the stochastic rounding and random-k's choice (a seeded stream in
    simulation). A pipeline without error feedback takes no residual and returns none.

    Raises:
        ConfigError: a residual for a pipeline without error feedback.
        ValidationError: the residual does not fit ``update``'s float tensors (names,
            shapes, float64), or ``update`` or the residual holds NaN or infinity.
        CodecError: a value beyond what the payload can carry (float32 range).
    """
    layout = update.layout()
    update.validate_like(layout)
    floats = _float_layout(layout)
    values = floats.flatten(update)
    if pipeline.error_feedback:
        if residual is not None:
            residual.validate_like(_residual_layout(floats))
            values = values + floats.flatten(residual)
    elif residual is not None:
        raise ConfigError("this pipeline keeps no error-feedback residual; pass residual=None")
    exact = b"".join(
        np.ascontiguousarray(update[name], dtype=update[name].dtype.newbyteorder("<")).tobytes()
        for name, dtype in zip(layout.names, layout.dtypes, strict=True)
        if not _is_float(dtype)
    )
    lossy = _encode_floats(values, floats, pipeline.lossy, rng)
    decoded = _decode_floats(lossy, floats, pipeline.lossy)  # exactly what the server gets
    new_residual = None
    if pipeline.error_feedback:
        residual_flat = values - floats.flatten(decoded)
        new_residual = _residual_layout(floats).unflatten(residual_flat)
    body = exact + lossy
    zstd = pipeline.zstd
    if zstd is not None:
        body = lossless.compress(body, zstd.level)
    return Encoded(wire.pack(pipeline, layout, body), new_residual)


def decode(payload: bytes, layout: Layout) -> Weights:
    """The update ``payload`` carries, as weights of ``layout``.

    Raises:
        CodecError: the payload is corrupted or truncated, names an unknown codec or
            format version, was made for another layout, or its body is inconsistent
            (wrong size, out-of-range indices, non-finite values, a zstd bomb).
    """
    pipeline, body = wire.unpack(payload, layout)
    floats = _float_layout(layout)
    exact_size = sum(
        size * dtype.itemsize
        for size, dtype in zip(layout.sizes, layout.dtypes, strict=True)
        if not _is_float(dtype)
    )
    expected = exact_size + _lossy_size(floats, pipeline.lossy)
    zstd = pipeline.zstd
    if zstd is not None:
        body = lossless.decompress(body, expected)
    if len(body) != expected:
        raise CodecError(f"payload body of {len(body)} bytes, the layout needs {expected}")
    exact = _decode_exact(body[:exact_size], layout)
    decoded = _decode_floats(body[exact_size:], floats, pipeline.lossy)
    return Weights(
        {name: (decoded[name] if name in decoded else exact[name]) for name in layout.names}
    )


def residual_layout(layout: Layout) -> Layout:
    """The layout of the error-feedback residual of updates of ``layout``: its float
    tensors (names and shapes), as float64."""
    return _residual_layout(_float_layout(layout))


def _is_float(dtype: np.dtype[np.generic]) -> bool:
    return dtype.kind == "f"


def _float_layout(layout: Layout) -> Layout:
    keep = [i for i, dtype in enumerate(layout.dtypes) if _is_float(dtype)]
    return Layout(
        names=tuple(layout.names[i] for i in keep),
        shapes=tuple(layout.shapes[i] for i in keep),
        dtypes=tuple(layout.dtypes[i] for i in keep),
    )


def _residual_layout(floats: Layout) -> Layout:
    return Layout(floats.names, floats.shapes, tuple(np.dtype(np.float64) for _ in floats.names))


def _lossy_size(floats: Layout, lossy: Lossy | None) -> int:
    if lossy is None:
        return sum(
            size * dtype.itemsize for size, dtype in zip(floats.sizes, floats.dtypes, strict=True)
        )
    if isinstance(lossy, StochasticQuantization):
        lengths = quantize.block_lengths(floats.sizes, lossy.block_size)
        return quantize.body_size(floats.total_size, int(lengths.size), lossy.bits)
    return sparsify.body_size(sparsify.kept(lossy.fraction, floats.total_size))


def _encode_floats(
    values: FloatVector, floats: Layout, lossy: Lossy | None, rng: np.random.Generator
) -> bytes:
    if lossy is None:
        return b"".join(
            chunk.astype(dtype.newbyteorder("<")).tobytes()
            for chunk, dtype in zip(_split(values, floats.sizes), floats.dtypes, strict=True)
        )
    if isinstance(lossy, StochasticQuantization):
        lengths = quantize.block_lengths(floats.sizes, lossy.block_size)
        return quantize.quantize(values, lengths, lossy.bits, rng)
    k = sparsify.kept(lossy.fraction, values.size)
    if isinstance(lossy, TopK):
        return sparsify.sparsify(values, sparsify.top_k(values, k), 1.0)
    # unscaled with error feedback; else d / k, which makes random-k unbiased
    scale = 1.0 if lossy.error_feedback or k == 0 else values.size / k
    return sparsify.sparsify(values, sparsify.random_k(values.size, k, rng), scale)


def _decode_floats(body: bytes, floats: Layout, lossy: Lossy | None) -> Weights:
    if lossy is None:
        arrays: dict[str, Array] = {}
        offset = 0
        for name, shape, dtype, size in zip(
            floats.names, floats.shapes, floats.dtypes, floats.sizes, strict=True
        ):
            end = offset + size * dtype.itemsize
            arrays[name] = (
                np.frombuffer(body[offset:end], dtype=dtype.newbyteorder("<"))
                .reshape(shape)
                .astype(dtype)
            )
            offset = end
        decoded = Weights(arrays)
    else:
        if isinstance(lossy, StochasticQuantization):
            lengths = quantize.block_lengths(floats.sizes, lossy.block_size)
            flat = quantize.dequantize(body, lengths, lossy.bits)
        else:
            k = sparsify.kept(lossy.fraction, floats.total_size)
            flat = sparsify.densify(body, floats.total_size, k)
        with np.errstate(over="ignore"):
            decoded = floats.unflatten(flat)
    for name, array in decoded.items():
        if not np.isfinite(array).all():
            raise CodecError(f"payload: tensor {name!r} decodes to NaN or infinity")
    return decoded


def _decode_exact(body: bytes, layout: Layout) -> dict[str, Array]:
    arrays: dict[str, Array] = {}
    offset = 0
    for name, shape, dtype, size in zip(
        layout.names, layout.shapes, layout.dtypes, layout.sizes, strict=True
    ):
        if _is_float(dtype):
            continue
        end = offset + size * dtype.itemsize
        raw = np.frombuffer(body[offset:end], dtype=dtype.newbyteorder("<"))
        if dtype.kind == "b" and (raw.view(np.uint8) > 1).any():
            raise CodecError(f"payload: boolean tensor {name!r} holds a byte other than 0 or 1")
        arrays[name] = raw.reshape(shape).astype(dtype)
        offset = end
    return arrays


def _split(values: FloatVector, sizes: Sequence[int]) -> list[FloatVector]:
    bounds = np.cumsum([0, *sizes])
    return [values[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]
