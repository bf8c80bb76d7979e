"""The model delta: exact, smaller than the model for a small step, refused when bad."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.core.serde import weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.errors import CodecError
from fedhive.transport.delta import apply_delta, encode_delta


def _model(seed: int, step: float = 0.0, base_seed: int | None = None) -> bytes:
    rng = np.random.default_rng(seed if base_seed is None else base_seed)
    w = {
        "w": rng.normal(size=(32, 64)).astype(np.float32),
        "b": rng.normal(size=32).astype(np.float64),
        "h": rng.normal(size=8).astype(np.float16),
        "n": rng.integers(-5, 5, size=6).astype(np.int64),
        "m": rng.integers(0, 2, size=5).astype(np.bool_),
    }
    if step:
        noise = np.random.default_rng(seed + 1000)
        for k in ("w", "b", "h"):
            w[k] = (w[k] + step * noise.normal(size=w[k].shape)).astype(w[k].dtype)
        w["n"] = w["n"] - 3  # integers change too, wrapping arithmetic in the delta
    return weights_to_bytes(Weights(w))


def test_the_delta_rebuilds_the_target_exactly_and_is_smaller() -> None:
    base, target = _model(0), _model(0, step=1e-3)
    delta = encode_delta(base, target)
    assert delta is not None
    assert apply_delta(base, delta, max_size=len(target)) == target
    assert len(delta) < 0.9 * len(target)  # the high planes of a small step are zeros


def test_no_change_costs_almost_nothing() -> None:
    base = _model(0)
    delta = encode_delta(base, base)
    assert delta is not None
    assert len(delta) < 200
    assert apply_delta(base, delta, max_size=len(base)) == base


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=40),
    st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=40),
)
def test_any_two_float32_models_of_one_layout_round_trip(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    base = weights_to_bytes(Weights({"x": np.array(a[:n], np.float32)}))
    target = weights_to_bytes(Weights({"x": np.array(b[:n], np.float32)}))
    delta = encode_delta(base, target)
    assert delta is not None
    assert apply_delta(base, delta, max_size=len(target)) == target


def test_another_layout_has_no_delta() -> None:
    base = weights_to_bytes(Weights({"x": np.zeros(4, np.float32)}))
    assert encode_delta(base, weights_to_bytes(Weights({"x": np.zeros(5, np.float32)}))) is None
    assert encode_delta(base, weights_to_bytes(Weights({"y": np.zeros(4, np.float32)}))) is None
    assert encode_delta(base, weights_to_bytes(Weights({"x": np.zeros(4, np.float64)}))) is None


def test_a_delta_against_another_base_is_refused() -> None:
    base, target = _model(0), _model(0, step=1e-3)
    delta = encode_delta(base, target)
    assert delta is not None
    with pytest.raises(CodecError, match="another base"):
        apply_delta(_model(1), delta, max_size=len(target))


def test_a_target_over_the_limit_is_refused_before_decompressing() -> None:
    base, target = _model(0), _model(0, step=1e-3)
    delta = encode_delta(base, target)
    assert delta is not None
    with pytest.raises(CodecError, match="limit"):
        apply_delta(base, delta, max_size=len(target) - 1)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda d: d[:10], "truncated"),
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: d[:4] + b"\x09" + d[5:], "format version 9"),
        (lambda d: d[:-3], "zstd"),
        (lambda d: d[:45] + b"\x00" * (len(d) - 45), "zstd"),
    ],
)
def test_malformed_deltas_are_codec_errors(mangle: object, match: str) -> None:
    base, target = _model(0), _model(0, step=1e-3)
    delta = encode_delta(base, target)
    assert delta is not None
    assert callable(mangle)
    with pytest.raises(CodecError, match=match):
        apply_delta(base, mangle(delta), max_size=len(target))


def test_a_wrong_declared_size_is_refused() -> None:
    base, target = _model(0), _model(0, step=1e-3)
    delta = encode_delta(base, target)
    assert delta is not None
    wrong = delta[:37] + (len(target) - 8).to_bytes(8, "little") + delta[45:]
    with pytest.raises(CodecError, match="declares"):
        apply_delta(base, wrong, max_size=len(target))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_a_codec_error_or_a_different_model(data: st.DataObject) -> None:
    """A flip is refused as a CodecError, or (in the zstd body, which has no checksum)
    decodes to other bytes of the declared size, which the caller's version check
    (SHA-256) refuses; no other exception escapes."""
    base, target = _model(0), _model(0, step=1e-3)
    delta = encode_delta(base, target)
    assert delta is not None
    at = data.draw(st.integers(0, len(delta) - 1))
    flipped = bytearray(delta)
    flipped[at] ^= data.draw(st.integers(1, 255))
    try:
        rebuilt = apply_delta(base, bytes(flipped), max_size=len(target))
    except CodecError:
        return
    assert at >= 45
    assert len(rebuilt) == len(target)
