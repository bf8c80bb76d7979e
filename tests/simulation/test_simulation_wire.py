"""Driver↔worker frames: encode/read round trips, clean EOF, and bad frames refused with
SerializationError only; message ↔ JSON mappings invert each other."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extension_strategies import extensions
from fedhive.core.extensions import Proximal, SecAggWeighting, Weighting
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    ClientConfig,
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    PrivacyBudget,
)
from fedhive.core.weights import Weights
from fedhive.errors import SerializationError
from fedhive.simulation.wire import (
    MAX_HEADER_BYTES,
    config_from_json,
    config_to_json,
    encode_frame,
    evaluate_reply_from_json,
    evaluate_reply_to_json,
    evaluate_task_from_json,
    failure_from_json,
    failure_to_json,
    fit_reply_from_json,
    fit_reply_to_json,
    fit_task_from_json,
    read_frame,
    task_to_json,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
# "blobs" is the frame's own key
headers = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k != "blobs"), json_values, max_size=6
)
blob_lists = st.lists(st.binary(max_size=64), max_size=4)


class Trickle(io.BytesIO):
    """A stream that returns at most one byte per read, like a slow pipe."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(1 if size is None or size < 0 else min(size, 1))


@given(headers, blob_lists)
def test_frame_round_trip(header: dict[str, object], blobs: list[bytes]) -> None:
    stream = io.BytesIO(encode_frame(header, blobs))
    assert read_frame(stream) == (header, blobs)
    assert read_frame(stream) is None


@given(st.lists(st.tuples(headers, blob_lists), max_size=5))
def test_frames_back_to_back_then_clean_eof(frames: list[tuple[dict, list[bytes]]]) -> None:
    stream = io.BytesIO(b"".join(encode_frame(h, b) for h, b in frames))
    got = []
    while (frame := read_frame(stream)) is not None:
        got.append(frame)
    assert got == frames


@settings(max_examples=30)
@given(headers, blob_lists)
def test_short_reads_are_completed(header: dict[str, object], blobs: list[bytes]) -> None:
    stream = Trickle(encode_frame(header, blobs) * 2)
    assert read_frame(stream) == (header, blobs)
    assert read_frame(stream) == (header, blobs)
    assert read_frame(stream) is None


def test_no_blobs_and_empty_header() -> None:
    assert read_frame(io.BytesIO(encode_frame({}))) == ({}, [])
    assert read_frame(io.BytesIO(encode_frame({}, [b""]))) == ({}, [b""])


def test_empty_stream_is_a_clean_end() -> None:
    assert read_frame(io.BytesIO(b"")) is None


def test_encoder_does_not_change_the_callers_header() -> None:
    header = {"kind": "fit"}
    encode_frame(header, [b"abc"])
    assert header == {"kind": "fit"}


@given(headers, blob_lists, st.data())
def test_truncated_frames_are_refused(
    header: dict[str, object], blobs: list[bytes], data: st.DataObject
) -> None:
    frame = encode_frame(header, blobs)
    cut = data.draw(st.integers(min_value=1, max_value=len(frame) - 1))
    with pytest.raises(SerializationError):
        read_frame(io.BytesIO(frame[:cut]))


def test_every_prefix_of_a_frame_is_refused() -> None:
    frame = encode_frame({"kind": "fit", "round": 3}, [b"weights", b"", b"state"])
    for cut in range(1, len(frame)):
        with pytest.raises(SerializationError, match="truncated frame"):
            read_frame(io.BytesIO(frame[:cut]))


@given(st.binary(min_size=1, max_size=200))
def test_garbage_is_refused_or_parsed_never_anything_else(data: bytes) -> None:
    stream = io.BytesIO(data)
    try:
        while (frame := read_frame(stream)) is not None:
            header, blobs = frame
            assert isinstance(header, dict)
            assert all(isinstance(b, bytes) for b in blobs)
    except SerializationError:
        pass


def raw(head: bytes, rest: bytes = b"") -> io.BytesIO:
    return io.BytesIO(struct.pack("<I", len(head)) + head + rest)


@pytest.mark.parametrize(
    ("head", "match"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        (b"[1, 2]", "must be an object with a blob list"),
        (b'{"kind": "fit"}', "must be an object with a blob list"),
        (b'{"blobs": 3}', "must be an object with a blob list"),
        (b'{"blobs": [-1]}', "blob sizes must be integers"),
        (b'{"blobs": ["3"]}', "blob sizes must be integers"),
        (b'{"blobs": [1.0]}', "blob sizes must be integers"),
        (b'{"blobs": [9999999999999]}', "blob sizes must be integers"),
    ],
)
def test_malformed_headers_are_refused(head: bytes, match: str) -> None:
    with pytest.raises(SerializationError, match=match):
        read_frame(raw(head, b"\0" * 8))


def test_header_length_over_the_limit_is_refused_before_reading() -> None:
    stream = io.BytesIO(struct.pack("<I", MAX_HEADER_BYTES + 1))
    with pytest.raises(SerializationError, match="exceeds the limit"):
        read_frame(stream)


def test_missing_blob_bytes_are_refused() -> None:
    with pytest.raises(SerializationError, match="truncated frame: 2 of 5 bytes"):
        read_frame(raw(b'{"blobs": [5]}', b"ab"))


def test_reserved_blobs_key_is_refused_or_kept() -> None:
    header = {"blobs": "mine"}
    try:
        frame = encode_frame(header, [b"x"])
    except (SerializationError, ValueError):
        return
    assert read_frame(io.BytesIO(frame)) == (header, [b"x"])


def test_deeply_nested_header_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        read_frame(raw(b"[" * 100_000))


# --- message mappings -------------------------------------------------------------------

extra_values = (
    st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
budgets = st.none() | st.builds(
    PrivacyBudget,
    epsilon_max=st.floats(min_value=1e-6, max_value=1e6),
    delta=st.floats(min_value=1e-12, max_value=0.5),
)
client_configs = st.builds(
    ClientConfig,
    local_epochs=st.integers(1, 100),
    batch_size=st.integers(1, 4096),
    learning_rate=st.floats(min_value=1e-9, max_value=10.0),
    privacy_budget=budgets,
    extensions=extensions(),
    extra=st.dictionaries(st.text(min_size=1, max_size=6), extra_values, max_size=3),
)


def through_json(data: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(data, allow_nan=False))


@given(client_configs)
def test_config_round_trip(config: ClientConfig) -> None:
    assert config_from_json(through_json(config_to_json(config))) == config


@given(
    st.integers(0, 10**6),
    st.text(min_size=1, max_size=10),
    st.text(min_size=1, max_size=64),
    st.integers(0, 2**64 - 1),
    client_configs,
)
def test_task_round_trips(
    rnd: int, client_id: str, version: str, seed: int, config: ClientConfig
) -> None:
    fit = FitTask(round=rnd, client_id=client_id, version=version, seed=seed, config=config)
    ev = EvaluateTask(round=rnd, client_id=client_id, version=version, seed=seed, config=config)
    assert fit_task_from_json(through_json(task_to_json(fit))) == fit
    assert evaluate_task_from_json(through_json(task_to_json(ev))) == ev


metrics = st.dictionaries(
    st.text(min_size=1, max_size=8), st.floats(allow_nan=False, allow_infinity=False), max_size=4
)


@given(st.integers(0, 2**29), metrics)
def test_fit_reply_round_trip(num_examples: int, reply_metrics: dict[str, float]) -> None:
    update = Weights({"w": np.arange(3, dtype=np.float32)})
    reply = FitReply(
        client_id="c1",
        round=4,
        version="abc",
        update=update,
        num_examples=num_examples,
        metrics=reply_metrics,
    )
    back = fit_reply_from_json(through_json(fit_reply_to_json(reply)), update)
    assert back == reply
    assert back.update is update


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 2**29), metrics)
def test_evaluate_reply_round_trip(
    loss: float, num_examples: int, reply_metrics: dict[str, float]
) -> None:
    reply = EvaluateReply(
        client_id="c", round=2, loss=loss, num_examples=num_examples, metrics=reply_metrics
    )
    assert evaluate_reply_from_json(through_json(evaluate_reply_to_json(reply))) == reply


def test_failure_to_json_holds_every_field() -> None:
    failure = Failure(
        client_id="c9",
        round=3,
        stage=Stage.FIT,
        kind=FailureKind.CLIENT_ERROR,
        message="boom",
        detail="ValueError",
    )
    restored = failure_from_json(through_json(failure_to_json(failure)))  # type: ignore[arg-type]
    assert restored == failure
    assert (type(restored.stage), type(restored.kind)) == (Stage, FailureKind)


def test_a_budgets_own_noise_settings_reach_a_worker() -> None:
    budget = PrivacyBudget(epsilon_max=2.0, delta=1e-6, min_noise_multiplier=1.5, clipping_norm=0.5)
    config = ClientConfig(privacy_budget=budget)
    assert config_from_json(through_json(config_to_json(config))) == config  # type: ignore[arg-type]


def test_config_json_is_plain_data() -> None:
    config = ClientConfig(
        privacy_budget=PrivacyBudget(epsilon_max=2.0, delta=1e-6),
        extensions=(SecAggWeighting(weighting=Weighting.UNIFORM), Proximal(mu=0.5)),
    )
    assert config_to_json(config) == {
        "local_epochs": 1,
        "batch_size": 32,
        "learning_rate": 0.01,
        "privacy_budget": {"epsilon_max": 2.0, "delta": 1e-6},
        "extensions": {"proximal": {"mu": 0.5}, "secagg_weighting": {"weighting": "uniform"}},
        "extra": {},
    }
