"""encode/decode: round trips, error feedback conserves the sum, sizes, malformed bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedhive.compression import (
    Pipeline,
    RandomK,
    StochasticQuantization,
    TopK,
    Zstd,
    decode,
    encode,
    wire,
)
from fedhive.core import zstd as lossless
from fedhive.core.weights import Layout, Weights
from fedhive.errors import CodecError, ConfigError, NonFiniteError, ShapeMismatchError

RNG = np.random.default_rng


def SLACK(values: np.ndarray) -> float:
    """The block bounds travel as float32, rounded outward by at most one float32 ulp
    each (at least the smallest subnormal), and the decoded value is cast to its dtype."""
    f32 = np.finfo(np.float32)
    return float(4 * f32.eps * np.abs(values).max() + 2 * f32.smallest_subnormal)


PIPELINES = [
    Pipeline(),
    Pipeline((Zstd(),)),
    Pipeline((StochasticQuantization(8),)),
    Pipeline((StochasticQuantization(4, 16), Zstd())),
    Pipeline((TopK(0.1),)),
    Pipeline((TopK(0.1), Zstd(5))),
    Pipeline((RandomK(0.2),)),
    Pipeline((RandomK(0.2, error_feedback=True), Zstd())),
]


def model(seed: int = 0) -> Weights:
    rng = RNG(seed)
    return Weights(
        {
            "w": rng.normal(size=(100, 99)).astype(np.float32),
            "b": rng.normal(size=100).astype(np.float32),
            "steps": np.array([3, -7], np.int64),
            "mask": np.array([True, False, True]),
            "half": rng.normal(size=7).astype(np.float16),
        }
    )


small = st.builds(
    lambda w, i, d: Weights({"w": w, "i": i, "d": d}),
    arrays(np.float32, st.integers(0, 30), elements=st.floats(-1e4, 1e4, width=32)),
    arrays(np.int32, st.integers(0, 5)),
    arrays(np.float64, (2, 3), elements=st.floats(-1e4, 1e4)),
)


@settings(max_examples=60, deadline=None)
@given(update=small, zstd=st.booleans())
def test_lossless_pipelines_round_trip_exactly(update: Weights, zstd: bool) -> None:
    pipeline = Pipeline((Zstd(),) if zstd else ())
    decoded = decode(encode(update, pipeline, rng=RNG(0), residual=None).payload, update.layout())
    assert decoded.layout() == update.layout()
    for name in update:
        assert decoded[name].tobytes() == update[name].tobytes()


@settings(max_examples=60, deadline=None)
@given(update=small, bits=st.sampled_from([4, 8]), block=st.none() | st.integers(1, 8))
def test_quantized_round_trip_within_one_step_integers_exact(
    update: Weights, bits: int, block: int | None
) -> None:
    pipeline = Pipeline((StochasticQuantization(bits, block), Zstd()))
    decoded = decode(encode(update, pipeline, rng=RNG(1), residual=None).payload, update.layout())
    assert decoded.layout() == update.layout()
    assert decoded["i"].tobytes() == update["i"].tobytes()
    for name in ("w", "d"):
        x = update[name].ravel().astype(np.float64)
        if x.size == 0:
            continue
        size = x.size if block is None else block
        for start in range(0, x.size, size):
            chunk = x[start : start + size]
            step = (chunk.max() - chunk.min()) / ((1 << bits) - 1)
            got = decoded[name].ravel()[start : start + size].astype(np.float64)
            assert (np.abs(got - chunk) <= step + SLACK(chunk)).all()


@pytest.mark.parametrize("pipeline", PIPELINES, ids=str)
def test_every_pipeline_decodes_to_the_layout_with_exact_non_floats(pipeline: Pipeline) -> None:
    update = model()
    encoded = encode(update, pipeline, rng=RNG(2), residual=None)
    decoded = decode(encoded.payload, update.layout())
    assert decoded.layout() == update.layout()
    assert decoded["steps"].tolist() == [3, -7]
    assert decoded["mask"].tolist() == [True, False, True]
    assert (encoded.residual is None) != pipeline.error_feedback


@pytest.mark.parametrize(
    "pipeline",
    [Pipeline((TopK(0.01),)), Pipeline((TopK(0.05), Zstd())), Pipeline((RandomK(0.1, True),))],
    ids=str,
)
def test_error_feedback_conserves_the_sum(pipeline: Pipeline) -> None:
    """Over T rounds: sum of decoded + final residual == sum of inputs, up to float64
    rounding of the two additions per round (2 T eps64 times the largest magnitude)."""
    rounds = 30
    rng = RNG(4)
    residual = None
    inputs = np.zeros(9900 + 100 + 7)
    decoded_sum = np.zeros_like(inputs)
    magnitude = 0.0
    for t in range(rounds):
        update = model(seed=100 + t)
        floats = Weights({k: v for k, v in update.items() if v.dtype.kind == "f"})
        encoded = encode(update, pipeline, rng=rng, residual=residual)
        decoded = decode(encoded.payload, update.layout())
        residual = encoded.residual
        assert residual is not None
        flat = floats.layout().flatten
        inputs += flat(floats)
        decoded_sum += flat(Weights({k: decoded[k] for k in floats}))
        magnitude = max(magnitude, np.abs(flat(residual)).max() + np.abs(flat(floats)).max())
    assert residual is not None
    total = decoded_sum + residual.layout().flatten(residual)
    tolerance = 4 * rounds * np.finfo(np.float64).eps * magnitude
    assert np.abs(total - inputs).max() <= tolerance
    assert np.abs(residual.layout().flatten(residual)).max() > 0  # something was held back


def test_without_error_feedback_the_sum_is_not_conserved() -> None:
    """The conservation above is the residual's doing: top-k alone loses mass."""
    update = model()
    floats = Weights({k: v for k, v in update.items() if v.dtype.kind == "f"})
    encoded = encode(update, Pipeline((TopK(0.01),)), rng=RNG(0), residual=None)
    decoded = decode(encoded.payload, update.layout())
    flat = floats.layout().flatten
    lost = flat(floats) - flat(Weights({k: decoded[k] for k in floats}))
    assert np.abs(lost).max() > 0.1


def ten_thousand() -> Weights:
    rng = RNG(5)
    return Weights(
        {
            "w": rng.normal(size=(100, 99)).astype(np.float32),
            "b": rng.normal(size=100).astype(np.float32),
        }
    )


@pytest.mark.parametrize(
    ("pipeline", "ratio"),
    [(Pipeline((StochasticQuantization(8),)), 3.9), (Pipeline((TopK(0.01),)), 30.0)],
    ids=str,
)
def test_compressed_sizes(pipeline: Pipeline, ratio: float) -> None:
    update = ten_thousand()
    assert update.num_parameters == 10_000
    payload = encode(update, pipeline, rng=RNG(0), residual=None).payload
    assert update.nbytes / len(payload) >= ratio


def test_a_residual_must_fit_the_update() -> None:
    update = model()
    pipeline = Pipeline((TopK(0.1),))
    residual = encode(update, pipeline, rng=RNG(0), residual=None).residual
    assert residual is not None
    assert list(residual) == ["w", "b", "half"]
    assert {a.dtype for a in residual.values()} == {np.dtype(np.float64)}
    wrong = Weights({**residual, "b": np.zeros(99)})
    with pytest.raises(ShapeMismatchError):
        encode(update, pipeline, rng=RNG(0), residual=wrong)
    nan = Weights({**residual, "b": np.full(100, np.nan)})
    with pytest.raises(NonFiniteError):
        encode(update, pipeline, rng=RNG(0), residual=nan)
    with pytest.raises(ConfigError, match="residual"):
        encode(update, Pipeline((Zstd(),)), rng=RNG(0), residual=residual)


def test_non_finite_updates_are_refused() -> None:
    update = Weights({"w": np.array([1.0, np.inf], np.float32)})
    with pytest.raises(NonFiniteError):
        encode(update, Pipeline(), rng=RNG(0), residual=None)


def test_a_value_beyond_float16_after_feedback_is_refused_at_encode() -> None:
    update = Weights({"h": np.array([60000.0, 0.0], np.float16)})
    residual = Weights({"h": np.array([10000.0, 0.0])})
    with pytest.raises(CodecError, match="infinity"):
        encode(update, Pipeline((TopK(0.5),)), rng=RNG(0), residual=residual)


SMALL = Weights({"w": np.linspace(-1, 1, 12, dtype=np.float32), "n": np.arange(3)})
PAYLOADS = [encode(SMALL, p, rng=RNG(6), residual=None).payload for p in PIPELINES]


@settings(max_examples=300, deadline=None)
@given(
    which=st.integers(0, len(PAYLOADS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=3),
    cut=st.none() | st.integers(0, 10**6),
)
def test_flipped_or_truncated_payloads_are_codec_errors(
    which: int, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(PAYLOADS[which])
    for position, xor in flips:
        data[position % len(data)] ^= xor
    if cut is not None:
        data = data[: cut % len(data)]
    if bytes(data) == PAYLOADS[which]:
        return
    with pytest.raises(CodecError):
        decode(bytes(data), SMALL.layout())


def reseal(payload: bytes, body: bytes, layout: Layout | None = None) -> bytes:
    """``payload``'s frame around another body, with a matching checksum."""
    layout = SMALL.layout() if layout is None else layout
    return wire.pack(wire.unpack(payload, layout)[0], layout, body)


def body_of(payload: bytes) -> bytes:
    return wire.unpack(payload, SMALL.layout())[1]


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, len(PAYLOADS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=3),
    cut=st.none() | st.integers(0, 10**6),
)
def test_resealed_tampered_bodies_are_codec_errors_or_weights_of_the_layout(
    which: int, flips: list[tuple[int, int]], cut: int | None
) -> None:
    """With a valid digest the body's own checks decide: never another exception, never
    weights of another shape or with NaN."""
    body = bytearray(body_of(PAYLOADS[which]))
    for position, xor in flips:
        if body:
            body[position % len(body)] ^= xor
    if cut is not None and body:
        body = body[: cut % len(body)]
    try:
        decoded = decode(reseal(PAYLOADS[which], bytes(body)), SMALL.layout())
    except CodecError:
        return
    assert decoded.layout() == SMALL.layout()
    assert all(np.isfinite(a).all() for a in decoded.values())


def test_crafted_bodies_are_codec_errors() -> None:
    layout = SMALL.layout()
    exact = np.arange(3).astype("<i8").tobytes()
    topk = encode(SMALL, Pipeline((TopK(0.25),)), rng=RNG(0), residual=None).payload
    zstd = encode(SMALL, Pipeline((TopK(0.25), Zstd())), rng=RNG(0), residual=None).payload
    indices = np.array([0, 1, 2], "<u4").tobytes()
    out_of_range = exact + np.array([0, 1, 12], "<u4").tobytes() + bytes(12)
    nan = exact + indices + np.array([1, np.nan, 2], "<f4").tobytes()
    bomb = lossless.compress(bytes(20 << 20), 3)
    cases = {
        "below 12": reseal(topk, out_of_range),
        "NaN": reseal(topk, nan),
        "layout needs": reseal(topk, exact + indices),
        "declares": reseal(zstd, bomb),
    }
    for message, payload in cases.items():
        with pytest.raises(CodecError, match=message):
            decode(payload, layout)


def test_a_boolean_tensor_holding_other_bytes_is_a_codec_error() -> None:
    update = Weights({"m": np.array([True, False])})
    payload = encode(update, Pipeline(), rng=RNG(0), residual=None).payload
    with pytest.raises(CodecError, match="boolean"):
        decode(reseal(payload, b"\x01\x02", update.layout()), update.layout())


def test_the_header_names_the_pipeline_and_layout() -> None:
    pipeline = Pipeline((StochasticQuantization(4, 8), Zstd(2)))
    payload = encode(SMALL, pipeline, rng=RNG(0), residual=None).payload
    assert payload[:4] == wire.MAGIC
    assert wire.unpack(payload, SMALL.layout())[0] == pipeline
