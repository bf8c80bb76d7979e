"""Stochastic fixed-point encoding: decoded sums are within the bound and unbiased."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.core.rng import SeedStream
from fedhive.errors import SecAggError
from fedhive.secagg import quantize
from fedhive.secagg.params import SecAggParams

PARAMS = SecAggParams(num_clients=300, ring_bits=32, max_weight=16, clip_range=2.0)


def encode_sum(
    vectors: list[np.ndarray], weights: list[int], params: SecAggParams, seed: int
) -> tuple[np.ndarray, int]:
    stream = SeedStream(seed)
    total = None
    for i, (vector, weight) in enumerate(zip(vectors, weights, strict=True)):
        encoded = quantize.encode(vector, weight, params, stream.child(i).numpy())
        total = encoded if total is None else total + encoded
    assert total is not None
    return quantize.decode(total, len(vectors), params)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 30),
    st.sampled_from([32, 64]),
    st.integers(0, 2**32),
)
def test_decoded_sum_is_within_the_quantization_bound(m: int, d: int, bits: int, seed: int) -> None:
    params = SecAggParams(num_clients=300, ring_bits=bits, max_weight=16, clip_range=2.0)
    rng = SeedStream(seed).child("data").numpy()
    vectors = [rng.uniform(-3, 3, d) for _ in range(m)]  # some beyond the clip range
    weights = [int(w) for w in rng.integers(1, 17, m)]
    total, weight = encode_sum(vectors, weights, params, seed)
    exact = sum(w * np.clip(v, -2, 2) for v, w in zip(vectors, weights, strict=True))
    bound = m * quantize.step(params) * (1 + 2**-8)
    assert np.all(np.abs(total - exact) <= bound + 1e-12 * np.abs(exact))
    assert weight == sum(weights)


def test_rounding_is_unbiased() -> None:
    rng = SeedStream(5).numpy()
    vector = rng.uniform(-2, 2, 64)
    step = quantize.step(PARAMS)
    errors = []
    for trial in range(400):
        total, _ = encode_sum([vector], [3], PARAMS, seed=trial)
        errors.append((total - 3 * vector) / step)
    errors_array = np.asarray(errors)
    assert np.all(np.abs(errors_array) < 1 + 2**-8)
    # mean of 400 * 64 errors in (-1, 1) with variance <= 1/4: |mean| < 6 sigma
    assert abs(errors_array.mean()) < 6 * 0.5 / np.sqrt(errors_array.size)


def test_encoding_layout_offset_and_weight() -> None:
    encoded = quantize.encode(np.asarray([-2.0, 0.0, 2.0]), 5, PARAMS, SeedStream(0).numpy())
    assert encoded.dtype == np.uint32
    assert encoded.size == 4
    levels = 1 << PARAMS.quantization_bits
    offset = quantize.offset(PARAMS)
    assert list(encoded) == [offset - 5 * levels, offset, offset + 5 * levels, 5]


@pytest.mark.parametrize(
    ("vector", "weight", "match"),
    [
        ([1.0, np.nan], 1, "finite"),
        ([[1.0]], 1, "1-d"),
        ([1.0], 0, "weight"),
        ([1.0], 17, "weight"),
        ([1.0], 1.5, "integer"),
    ],
)
def test_bad_inputs_are_refused(vector: object, weight: object, match: str) -> None:
    with pytest.raises(SecAggError, match=match):
        quantize.encode(vector, weight, PARAMS, SeedStream(0).numpy())  # type: ignore[arg-type]


def test_decode_refuses_a_sum_of_the_wrong_kind_or_count() -> None:
    total = np.zeros(4, dtype=np.uint32)
    for bad in (total.astype(np.uint64), total.reshape(2, 2), total[:0]):
        with pytest.raises(SecAggError, match="non-empty 1-d uint32 vector") as caught:
            quantize.decode(bad, 1, PARAMS)
        assert caught.value.stage == "decode"
    for count in (0, PARAMS.num_clients + 1):
        with pytest.raises(SecAggError, match=rf"count must be in \[1, 300\], got {count}"):
            quantize.decode(total, count, PARAMS)
