"""Stochastic quantization: within one step of each value, unbiased, exact on constants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedhive.compression import quantize
from fedhive.errors import CodecError

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def steps(values: np.ndarray, lengths: np.ndarray, bits: int) -> np.ndarray:
    """Each value's step (max - min) / (2**bits - 1) of its block, from the data."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    lo = np.minimum.reduceat(values, starts)
    hi = np.maximum.reduceat(values, starts)
    return np.repeat((hi - lo) / ((1 << bits) - 1), lengths)


@settings(max_examples=80, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 200), elements=finite),
    bits=st.sampled_from([4, 8]),
    block=st.none() | st.integers(1, 64),
    seed=st.integers(0, 2**32),
)
def test_each_value_decodes_within_one_step_of_its_block(
    values: np.ndarray, bits: int, block: int | None, seed: int
) -> None:
    lengths = quantize.block_lengths([values.size], block)
    body = quantize.quantize(values, lengths, bits, np.random.default_rng(seed))
    assert len(body) == quantize.body_size(values.size, lengths.size, bits)
    decoded = quantize.dequantize(body, lengths, bits)
    # the float32 bounds are rounded outward: at most one float32 ulp of the bounds wider
    f32 = np.finfo(np.float32)
    slack = 4 * f32.eps * np.abs(values).max() + 2 * f32.smallest_subnormal
    assert (np.abs(decoded - values) <= steps(values, lengths, bits) + slack).all()


def test_block_lengths_never_span_two_tensors() -> None:
    assert quantize.block_lengths([5, 0, 3], 2).tolist() == [2, 2, 1, 2, 1]
    assert quantize.block_lengths([5, 3], None).tolist() == [5, 3]
    assert quantize.block_lengths([5], 10).tolist() == [5]
    assert quantize.block_lengths([], 4).tolist() == []


@pytest.mark.parametrize("bits", [4, 8])
def test_quantization_is_unbiased(bits: int) -> None:
    """Mean of n draws within 5 standard errors of the input; a code's variance is at
    most step**2 / 4 (a Bernoulli scaled by one step)."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=40)
    lengths = quantize.block_lengths([40], 10)
    draws = 4000
    total = np.zeros_like(values)
    for _ in range(draws):
        total += quantize.dequantize(quantize.quantize(values, lengths, bits, rng), lengths, bits)
    standard_error = steps(values, lengths, bits) / 2 / np.sqrt(draws)
    assert (np.abs(total / draws - values) <= 5 * standard_error + 1e-7).all()


def test_constant_blocks_decode_exactly() -> None:
    values = np.array([2.5, 2.5, 2.5, -1.0])
    lengths = np.array([3, 1])
    body = quantize.quantize(values, lengths, 4, np.random.default_rng(0))
    assert quantize.dequantize(body, lengths, 4).tolist() == values.tolist()


def test_values_beyond_float32_cannot_be_quantized() -> None:
    with pytest.raises(CodecError, match="float32"):
        quantize.quantize(np.array([0.0, 1e300]), np.array([2]), 8, np.random.default_rng(0))


def test_four_bit_codes_pack_two_to_a_byte() -> None:
    values = np.arange(5, dtype=np.float64)
    lengths = np.array([5])
    body = quantize.quantize(values, lengths, 4, np.random.default_rng(0))
    assert len(body) == 8 + 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-1], "expected"),
        (lambda b: b + b"\0", "expected"),
        (lambda b: np.float32(np.nan).tobytes() + b[4:], "not finite"),
        (lambda b: np.float32(5).tobytes() + b[4:], "min exceeds max"),  # lo 5 > hi 4
        (lambda b: b[:-1] + bytes([b[-1] | 0xF0]), "padding"),
    ],
)
def test_malformed_bodies_are_codec_errors(mutate: object, message: str) -> None:
    values = np.arange(5, dtype=np.float64)
    lengths = np.array([5])
    body = quantize.quantize(values, lengths, 4, np.random.default_rng(0))
    with pytest.raises(CodecError, match=message):
        quantize.dequantize(mutate(body), lengths, 4)  # type: ignore[operator]
