"""Wire codec: round trips, and typed errors only for anything a network can send."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extension_strategies import extensions, one_of_each
from fedhive.core.codecs import Pipeline, StochasticQuantization, TopK, Zstd
from fedhive.core.extensions import (
    ClipAndNoise,
    Compression,
    DpSgd,
    Extension,
    PartialWork,
    Proximal,
    SecAggWeighting,
    Weighting,
)
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import ClientConfig, EvaluateTask, Failure, FitTask, PrivacyBudget
from fedhive.errors import SerializationError, ValidationError
from fedhive.transport.codec import (
    TaskEnvelope,
    UploadStatus,
    config_from_proto,
    config_to_proto,
    decode,
    failure_error,
    failure_from_header,
    metrics_from_proto,
    task_from_proto,
    task_to_proto,
    upload_reply,
    upload_status,
)
from fedhive.transport.digests import header_sha256, task_sha256
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
    extensions=extensions(),
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
        config=ClientConfig(
            extensions=(ClipAndNoise(noise_multiplier=1.0, clipping_norm=2.0, noise_std=1.0),),
            extra={"tag": 1.0},
        ),
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


def changed_extension(**changes: object) -> FitTask:
    [ask] = ENVELOPE.task.config.extensions
    return changed_config(extensions=(replace(ask, **changes),))  # type: ignore[arg-type]


def with_extension(added: Extension) -> FitTask:
    return changed_task(config=ENVELOPE.task.config.with_extensions(added))


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
    "extra_value": {"task": changed_config(extra={"tag": 0.0})},
    "extra_type": {"task": changed_config(extra={"tag": 1})},
    "extension_value": {"task": changed_extension(noise_std=0.5)},
    "extension_unset": {"task": changed_extension(clipping_norm=None, noise_std=0.0)},
    "extension_false": {"task": changed_extension(seeded=False)},
    "extension_added": {"task": with_extension(Proximal(mu=0.0))},
    "compression_added": {"task": with_extension(Compression(pipeline=Pipeline((TopK(0.1),))))},
    "extensions_removed": {"task": changed_config(extensions=())},
    "task_id": {"task_id": "u"},
    "run_id": {"run_id": "s"},
    "deadline": {"deadline_unix": 101.0},
    "model_size": {"model_size": 10},
    "secagg": {"secagg": b"another setup"},
}


@pytest.mark.parametrize("changes", TASK_CHANGES.values(), ids=TASK_CHANGES.keys())
def test_every_field_of_a_task_changes_its_hash(changes: dict[str, object]) -> None:
    assert task_sha256(replace(ENVELOPE, **changes)) != task_sha256(ENVELOPE)  # type: ignore[arg-type]


def test_a_tasks_hash_binds_its_compression_pipeline() -> None:
    """(It once failed to hash at all: the pipeline's stages are a repeated field.)"""
    pipelines = [
        Pipeline((TopK(0.1),)),
        Pipeline((TopK(0.2),)),
        Pipeline((TopK(0.1), Zstd(3))),
        Pipeline((StochasticQuantization(8),)),
        Pipeline((StochasticQuantization(8, block_size=256),)),
    ]
    hashes = {
        task_sha256(replace(ENVELOPE, task=with_extension(Compression(pipeline=pipeline))))
        for pipeline in pipelines
    }
    assert len(hashes) == len(pipelines)


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
    "compressed": {"compressed": True},
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


@pytest.mark.parametrize(
    "failure",
    [
        Failure.of("c", 2, Stage.FIT, ValueError("bad batch")),
        Failure.of("c", 2, Stage.PRIVACY, ValidationError("no clipping norm")),
        Failure(
            client_id="c", round=2, stage=Stage.BUDGET, kind=FailureKind.BUDGET_EXCEEDED, message=""
        ),
    ],
)
def test_a_reported_failure_comes_back_as_the_same_typed_failure(failure: Failure) -> None:
    header = pb.ResultHeader(
        failure_stage=failure.stage,
        failure_error=failure_error(failure),
        failure_message=failure.message,
    )
    back = failure_from_header(header, client_id="c", round=2)
    assert back == failure
    assert (type(back.stage), type(back.kind)) == (Stage, FailureKind)


@pytest.mark.parametrize(
    ("stage", "error", "message"),
    [
        ("verify", "validation", "a client reports failures at"),  # the server's own stage
        ("fit", "RuntimeError", "unknown failure kind"),  # a class name is no kind
        ("fit", "client_error:not an identifier", "is not an identifier"),
        ("fit", "client_error:" + "E" * 65, "is not an identifier"),
    ],
)
def test_a_reported_failure_is_held_to_the_stage_and_kind_enums(
    stage: str, error: str, message: str
) -> None:
    header = pb.ResultHeader(failure_stage=stage, failure_error=error)
    with pytest.raises(ValidationError, match=message):
        failure_from_header(header, client_id="c", round=2)


def test_an_upload_verdict_crosses_the_wire_as_itself() -> None:
    for status in UploadStatus:
        reply = decode(pb.UploadReply, upload_reply(status, "why").SerializeToString())
        assert upload_status(reply) is status
    assert upload_status(pb.UploadReply(status=99)) is UploadStatus.REJECTED


@given(st.data())
def test_every_instruction_type_travels_in_its_own_typed_field(data: st.DataObject) -> None:
    for strategy in one_of_each:
        value = data.draw(strategy)
        message = config_to_proto(ClientConfig(extensions=(value,)))
        assert len(message.extensions.ListFields()) == 1
        assert dict(message.extra) == {}
        assert config_from_proto(message).extension(type(value)) == value


WIRE_REFUSALS = {
    "mu": ("proximal", "mu", -1.0),
    "max_local_steps": ("partial_work", "max_local_steps", 0),
    "noise_std": ("clip_and_noise", "noise_std", float("inf")),
    "noise_multiplier": ("dpsgd", "noise_multiplier", float("nan")),
    "delta": ("dpsgd", "delta", 1.0),
    "weighting": ("secagg_weighting", "weighting", pb.WEIGHTING_UNSPECIFIED),
}


@pytest.mark.parametrize("refusal", WIRE_REFUSALS.values(), ids=WIRE_REFUSALS.keys())
def test_an_out_of_range_instruction_on_the_wire_is_a_validation_error(
    refusal: tuple[str, str, object],
) -> None:
    kind, field, value = refusal
    good = ClientConfig(
        extensions=(
            Proximal(mu=0.1),
            PartialWork(max_local_steps=3),
            ClipAndNoise(noise_multiplier=1.0, clipping_norm=1.0, noise_std=0.5),
            DpSgd(noise_multiplier=1.0, max_grad_norm=1.0),
            SecAggWeighting(weighting=Weighting.UNIFORM),
        )
    )
    message = config_to_proto(good)
    assert config_from_proto(message) == good
    setattr(getattr(message.extensions, kind), field, value)
    with pytest.raises(ValidationError, match=field):
        config_from_proto(message)


def test_noise_without_a_clipping_norm_on_the_wire_is_refused() -> None:
    message = config_to_proto(ClientConfig(extensions=(ClipAndNoise(noise_multiplier=1.0),)))
    message.extensions.clip_and_noise.noise_std = 1.0  # std, but no norm to bound it by
    with pytest.raises(ValidationError, match="noise_std"):
        config_from_proto(message)
