"""Wire codec: round trips, and typed errors only for anything a network can send."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedhive.core.messages import ClientConfig, EvaluateTask, FitTask, PrivacyBudget
from fedhive.errors import SerializationError, ValidationError
from fedhive.transport.codec import (
    TaskEnvelope,
    config_from_proto,
    config_to_proto,
    decode,
    header_sha256,
    metrics_from_proto,
    task_from_proto,
    task_sha256,
    task_to_proto,
)
from fedhive.transport.proto import pb

VERSION = hashlib.sha256(b"model").hexdigest()

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
configs = st.builds(
    ClientConfig,
    local_epochs=st.integers(1, 2**31),
    batch_size=st.integers(1, 2**31),
    learning_rate=st.floats(min_value=1e-9, max_value=1e3),
    privacy_budget=st.none()
    | st.builds(
        PrivacyBudget,
        epsilon_max=st.floats(min_value=1e-3, max_value=1e3),
        delta=st.floats(min_value=1e-12, max_value=0.5),
        min_noise_multiplier=st.none() | st.floats(min_value=1e-3, max_value=1e3),
        clipping_norm=st.none() | st.floats(min_value=1e-3, max_value=1e3),
    ),
    extra=st.dictionaries(st.text(min_size=1, max_size=10), scalars, max_size=4),
)


@given(configs)
def test_config_round_trip(config: ClientConfig) -> None:
    wire = config_to_proto(config).SerializeToString()
    assert config_from_proto(decode(pb.ClientConfig, wire)) == config


def test_a_privacy_budget_crosses_the_wire_whole() -> None:
    # The process backend's tasks travel by this codec too: a budget's noise floor and
    # clipping norm must not be lost on the way to a simulated device.
    budget = PrivacyBudget(epsilon_max=2.0, delta=1e-6, min_noise_multiplier=0.7, clipping_norm=3)
    config = ClientConfig(privacy_budget=budget)
    wire = config_to_proto(config).SerializeToString()
    assert config_from_proto(decode(pb.ClientConfig, wire)).privacy_budget == budget
    floorless = ClientConfig(privacy_budget=PrivacyBudget(epsilon_max=2.0, delta=1e-6))
    wire = config_to_proto(floorless).SerializeToString()
    assert config_from_proto(decode(pb.ClientConfig, wire)) == floorless


@given(
    config=configs,
    fit=st.booleans(),
    rnd=st.integers(0, 2**40),
    seed=st.integers(0, 2**64 - 1),
    deadline=st.floats(0, 1e10),
)
def test_task_round_trip(
    config: ClientConfig, fit: bool, rnd: int, seed: int, deadline: float
) -> None:
    cls = FitTask if fit else EvaluateTask
    task = cls(round=rnd, client_id="client-0001", version=VERSION, seed=seed, config=config)
    envelope = TaskEnvelope(
        task=task,
        task_id="task-1",
        run_id="run-a",
        deadline_unix=deadline,
        model_size=123,
        model_signature=b"sig",
    )
    wire = task_to_proto(envelope).SerializeToString()
    assert task_from_proto(decode(pb.Task, wire), client_id="client-0001") == envelope


@given(
    config=configs,
    seed=st.integers(0, 2**64 - 1),
    deadline=st.floats(0, 1e10),
    secagg=st.binary(max_size=16),
)
def test_the_client_hashes_the_task_it_decoded_as_the_server_hashed_it(
    config: ClientConfig, seed: int, deadline: float, secagg: bytes
) -> None:
    task = FitTask(round=2, client_id="client-0001", version=VERSION, seed=seed, config=config)
    envelope = TaskEnvelope(
        task=task, task_id="t", run_id="r", deadline_unix=deadline, model_size=9, secagg=secagg
    )
    wire = task_to_proto(envelope).SerializeToString()
    decoded = task_from_proto(decode(pb.Task, wire), client_id="client-0001")
    assert task_sha256(decoded) == task_sha256(envelope)


ENVELOPE = TaskEnvelope(
    task=FitTask(
        round=2,
        client_id="client-0001",
        version=VERSION,
        seed=1,
        config=ClientConfig(extra={"dp.noise_std": 1.0}),
    ),
    task_id="t",
    run_id="r",
    deadline_unix=100.0,
    model_size=9,
    secagg=b"setup",
)


def changed_task(**changes: object) -> FitTask:
    return replace(ENVELOPE.task, **changes)  # type: ignore[arg-type]


def changed_config(**changes: object) -> FitTask:
    return changed_task(config=replace(ENVELOPE.task.config, **changes))  # type: ignore[arg-type]


TASK_CHANGES = {
    "client_id": {"task": changed_task(client_id="client-0002")},
    "round": {"task": changed_task(round=3)},
    "version": {"task": changed_task(version="0" * 64)},
    "seed": {"task": changed_task(seed=2)},
    "kind": {"task": EvaluateTask(**vars(ENVELOPE.task))},
    "local_epochs": {"task": changed_config(local_epochs=2)},
    "batch_size": {"task": changed_config(batch_size=1)},
    "learning_rate": {"task": changed_config(learning_rate=0.2)},
    "budget": {"task": changed_config(privacy_budget=PrivacyBudget(epsilon_max=1, delta=1e-5))},
    "extra_value": {"task": changed_config(extra={"dp.noise_std": 0.0})},
    "extra_type": {"task": changed_config(extra={"dp.noise_std": 1})},
    "task_id": {"task_id": "u"},
    "run_id": {"run_id": "s"},
    "deadline": {"deadline_unix": 101.0},
    "model_size": {"model_size": 10},
    "secagg": {"secagg": b"another setup"},
}


@pytest.mark.parametrize("changes", TASK_CHANGES.values(), ids=TASK_CHANGES.keys())
def test_every_field_of_a_task_changes_its_hash(changes: dict[str, object]) -> None:
    assert task_sha256(replace(ENVELOPE, **changes)) != task_sha256(ENVELOPE)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["min_noise_multiplier", "clipping_norm"])
def test_a_tasks_hash_binds_its_whole_privacy_budget(field: str) -> None:
    def signed(**more: float) -> str:
        budget = PrivacyBudget(epsilon_max=1, delta=1e-5, **more)
        return task_sha256(replace(ENVELOPE, task=changed_config(privacy_budget=budget)))

    assert signed(**{field: 1.0}) != signed()
    assert signed(**{field: 1.0}) != signed(**{field: 2.0})


def test_a_tasks_hash_leaves_out_the_signature_it_is_signed_with() -> None:
    assert task_sha256(replace(ENVELOPE, model_signature=b"sig")) == task_sha256(ENVELOPE)


def header(**changes: object) -> pb.ResultHeader:
    fields: dict[str, object] = {
        "kind": pb.TASK_KIND_FIT,
        "num_examples": 5,
        "metrics": {"accuracy": 0.5},
        "payload_size": 10,
        "payload_sha256": VERSION,
        "failure_stage": "",
    }
    return pb.ResultHeader(**{**fields, **changes})


HEADER_CHANGES = {
    "kind": {"kind": pb.TASK_KIND_EVALUATE},
    "num_examples": {"num_examples": 6},
    "metric_value": {"metrics": {"accuracy": 0.25}},
    "metric_added": {"metrics": {"accuracy": 0.5, "loss": 1.0}},
    "loss": {"loss": 0.1},
    "payload_size": {"payload_size": 11},
    "secagg": {"secagg": True},
    "failure_stage": {"failure_stage": "fit"},
    "failure_error": {"failure_error": "OSError"},
    "failure_message": {"failure_message": "disk"},
}


@pytest.mark.parametrize("changes", HEADER_CHANGES.values(), ids=HEADER_CHANGES.keys())
def test_every_unclaimed_field_of_a_result_header_changes_its_hash(
    changes: dict[str, object],
) -> None:
    assert header_sha256(header(**changes)) != header_sha256(header())


def test_a_result_headers_hash_leaves_out_its_signature_and_claimed_fields() -> None:
    claimed = header(signature=b"sig", task_id="t", run_id="r", round=4, payload_sha256="0" * 64)
    assert header_sha256(claimed) == header_sha256(header())


MESSAGES = [
    pb.ClientConfig,
    pb.Task,
    pb.PullTaskReply,
    pb.ModelChunk,
    pb.ResultChunk,
    pb.ResultHeader,
    pb.RegisterRequest,
    pb.UploadReply,
]


@pytest.mark.parametrize("cls", MESSAGES)
@given(data=st.binary(max_size=300))
def test_random_bytes_give_a_message_or_a_serialization_error(cls: type, data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        decode(cls, data)


@given(data=st.binary(max_size=300))
def test_random_task_bytes_give_a_task_or_typed_errors_only(data: bytes) -> None:
    with contextlib.suppress(SerializationError, ValidationError):
        task_from_proto(decode(pb.Task, data), client_id="c")


def test_a_task_with_bad_fields_is_refused() -> None:
    good = pb.Task(
        task_id="t",
        run_id="r",
        round=1,
        kind=pb.TASK_KIND_FIT,
        model_version=VERSION,
        config=config_to_proto(ClientConfig()),
    )
    for change, message in [
        ({"kind": pb.TASK_KIND_UNSPECIFIED}, "unknown task kind"),
        ({"model_version": "abc"}, "model_version must be a hex SHA-256"),
        ({"task_id": "../etc"}, "task_id is not a valid identifier"),
        ({"deadline_unix": float("nan")}, "deadline is not finite"),
    ]:
        bad = pb.Task()
        bad.CopyFrom(good)
        for key, value in change.items():
            setattr(bad, key, value)
        with pytest.raises(ValidationError, match=message):
            task_from_proto(bad, client_id="c")
    bad = pb.Task()
    bad.CopyFrom(good)
    bad.config.batch_size = 0
    with pytest.raises(ValidationError, match="batch_size"):
        task_from_proto(bad, client_id="c")


def test_metrics_must_be_finite() -> None:
    assert metrics_from_proto({"a": 1.0}) == {"a": 1.0}
    for bad in ({"a": float("nan")}, {"": 1.0}, {"a": float("inf")}):
        with pytest.raises(ValidationError):
            metrics_from_proto(bad)


def test_a_flood_of_metrics_from_the_wire_is_refused_before_it_is_read() -> None:
    header = pb.ResultHeader()
    header.metrics.update({f"m{i}": 1.0 for i in range(10_000)})
    with pytest.raises(ValidationError, match="10000 metrics, at most 256"):
        metrics_from_proto(header.metrics)
    with pytest.raises(ValidationError, match="longer than 128"):
        metrics_from_proto({"k" * 129: 1.0})
    assert metrics_from_proto({"k" * 128: 1.0}) == {"k" * 128: 1.0}
