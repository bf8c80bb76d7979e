"""Driver↔worker frames: encode/read round trips, clean EOF, and bad frames refused with
SerializationError only; tasks and outcomes travel as the gRPC wire's messages and
decode back to what was sent."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extension_strategies import extensions
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    ClientConfig,
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    PrivacyBudget,
    SecAggTask,
)
from fedhive.core.weights import Weights
from fedhive.errors import SerializationError, ValidationError
from fedhive.simulation.wire import (
    MAX_HEADER_BYTES,
    encode_frame,
    outcome_bytes,
    outcome_from_bytes,
    read_frame,
    task_bytes,
    task_from_bytes,
)
from fedhive.transport.codec import (
    TaskEnvelope,
    config_to_proto,
    decode,
    task_from_proto,
    task_to_proto,
)
from fedhive.transport.proto import pb

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


# --- tasks and outcomes: the gRPC wire's protobuf messages ------------------------------

VERSION = hashlib.sha256(b"model").hexdigest()
extra_values = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
budgets = st.none() | st.builds(
    PrivacyBudget,
    epsilon_max=st.floats(min_value=1e-6, max_value=1e6),
    delta=st.floats(min_value=1e-12, max_value=0.5),
    min_noise_multiplier=st.none() | st.floats(min_value=1e-3, max_value=1e3),
    clipping_norm=st.none() | st.floats(min_value=1e-3, max_value=1e3),
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


@given(
    st.integers(0, 10**6),
    st.text(min_size=1, max_size=10),
    st.integers(0, 2**64 - 1),
    client_configs,
)
def test_task_round_trips(rnd: int, client_id: str, seed: int, config: ClientConfig) -> None:
    fit = FitTask(round=rnd, client_id=client_id, version=VERSION, seed=seed, config=config)
    ev = EvaluateTask(round=rnd, client_id=client_id, version=VERSION, seed=seed, config=config)
    assert task_from_bytes(task_bytes(fit), client_id=client_id) == fit
    assert task_from_bytes(task_bytes(ev), client_id=client_id) == ev


def test_a_worker_reads_its_task_as_a_deployed_client_reads_one() -> None:
    # One task codec: the frame carries the gRPC wire's Task message, so whatever the
    # codec carries (a budget's own noise settings among it) reaches a simulated client.
    budget = PrivacyBudget(epsilon_max=2.0, delta=1e-6, min_noise_multiplier=1.5, clipping_norm=0.5)
    task = FitTask(
        round=3, client_id="c1", version=VERSION, seed=7, config=ClientConfig(privacy_budget=budget)
    )
    message = decode(pb.Task, task_bytes(task))
    assert task_from_proto(message, client_id="c1").task == task
    assert message.config == config_to_proto(task.config)


def test_a_secagg_stage_is_not_a_workers_task() -> None:
    stage = SecAggTask(round=1, client_id="c", version=hashlib.sha256(b"").hexdigest())
    envelope = TaskEnvelope(task=stage, task_id="t", run_id="r", deadline_unix=0, model_size=0)
    with pytest.raises(ValidationError, match="SecAgg"):
        task_from_bytes(task_to_proto(envelope).SerializeToString(), client_id="c")


metrics = st.dictionaries(
    st.text(min_size=1, max_size=8), st.floats(allow_nan=False, allow_infinity=False), max_size=4
)


@given(st.integers(0, 2**29), metrics)
def test_fit_reply_round_trip(num_examples: int, reply_metrics: dict[str, float]) -> None:
    update = Weights({"w": np.arange(3, dtype=np.float32)})
    reply = FitReply(
        client_id="c1",
        round=4,
        version=VERSION,
        update=update,
        num_examples=num_examples,
        metrics=reply_metrics,
    )
    back = outcome_from_bytes(*outcome_bytes(reply))
    assert isinstance(back, FitReply)
    assert dataclasses.replace(back, update=update) == reply
    assert list(back.update) == ["w"]
    assert back.update["w"].dtype == np.float32
    assert np.array_equal(back.update["w"], update["w"])


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 2**29), metrics)
def test_evaluate_reply_round_trip(
    loss: float, num_examples: int, reply_metrics: dict[str, float]
) -> None:
    reply = EvaluateReply(
        client_id="c", round=2, loss=loss, num_examples=num_examples, metrics=reply_metrics
    )
    assert outcome_from_bytes(*outcome_bytes(reply)) == reply


def test_a_failure_keeps_every_field_as_the_worker_wrote_it() -> None:
    failure = Failure(
        client_id="c9",
        round=3,
        stage=Stage.CLIENT_FN,
        kind=FailureKind.CLIENT_ERROR,
        message="x" * 5000,
        detail="KeyError",
    )
    restored = outcome_from_bytes(*outcome_bytes(failure))
    assert restored == failure
    assert isinstance(restored, Failure)
    assert (type(restored.stage), type(restored.kind)) == (Stage, FailureKind)
