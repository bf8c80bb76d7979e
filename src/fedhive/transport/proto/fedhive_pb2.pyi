from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Weighting(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEIGHTING_UNSPECIFIED: _ClassVar[Weighting]
    WEIGHTING_EXAMPLES: _ClassVar[Weighting]
    WEIGHTING_UNIFORM: _ClassVar[Weighting]

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_FIT: _ClassVar[TaskKind]
    TASK_KIND_EVALUATE: _ClassVar[TaskKind]
    TASK_KIND_SECAGG: _ClassVar[TaskKind]

class UploadStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_STATUS_UNSPECIFIED: _ClassVar[UploadStatus]
    UPLOAD_STATUS_ACCEPTED: _ClassVar[UploadStatus]
    UPLOAD_STATUS_REJECTED: _ClassVar[UploadStatus]
    UPLOAD_STATUS_ROUND_CLOSED: _ClassVar[UploadStatus]
    UPLOAD_STATUS_DUPLICATE: _ClassVar[UploadStatus]
WEIGHTING_UNSPECIFIED: Weighting
WEIGHTING_EXAMPLES: Weighting
WEIGHTING_UNIFORM: Weighting
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_FIT: TaskKind
TASK_KIND_EVALUATE: TaskKind
TASK_KIND_SECAGG: TaskKind
UPLOAD_STATUS_UNSPECIFIED: UploadStatus
UPLOAD_STATUS_ACCEPTED: UploadStatus
UPLOAD_STATUS_REJECTED: UploadStatus
UPLOAD_STATUS_ROUND_CLOSED: UploadStatus
UPLOAD_STATUS_DUPLICATE: UploadStatus

class ClientConfig(_message.Message):
    __slots__ = ("local_epochs", "batch_size", "learning_rate", "privacy_budget", "extra", "extensions")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Scalar
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Scalar, _Mapping]] = ...) -> None: ...
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    local_epochs: int
    batch_size: int
    learning_rate: float
    privacy_budget: PrivacyBudget
    extra: _containers.MessageMap[str, Scalar]
    extensions: Extensions
    def __init__(self, local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., privacy_budget: _Optional[_Union[PrivacyBudget, _Mapping]] = ..., extra: _Optional[_Mapping[str, Scalar]] = ..., extensions: _Optional[_Union[Extensions, _Mapping]] = ...) -> None: ...

class Extensions(_message.Message):
    __slots__ = ("proximal", "partial_work", "clip_and_noise", "secagg_weighting", "dpsgd", "compression")
    PROXIMAL_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_WORK_FIELD_NUMBER: _ClassVar[int]
    CLIP_AND_NOISE_FIELD_NUMBER: _ClassVar[int]
    SECAGG_WEIGHTING_FIELD_NUMBER: _ClassVar[int]
    DPSGD_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    proximal: Proximal
    partial_work: PartialWork
    clip_and_noise: ClipAndNoise
    secagg_weighting: SecAggWeighting
    dpsgd: DpSgd
    compression: Compression
    def __init__(self, proximal: _Optional[_Union[Proximal, _Mapping]] = ..., partial_work: _Optional[_Union[PartialWork, _Mapping]] = ..., clip_and_noise: _Optional[_Union[ClipAndNoise, _Mapping]] = ..., secagg_weighting: _Optional[_Union[SecAggWeighting, _Mapping]] = ..., dpsgd: _Optional[_Union[DpSgd, _Mapping]] = ..., compression: _Optional[_Union[Compression, _Mapping]] = ...) -> None: ...

class Proximal(_message.Message):
    __slots__ = ("mu",)
    MU_FIELD_NUMBER: _ClassVar[int]
    mu: float
    def __init__(self, mu: _Optional[float] = ...) -> None: ...

class PartialWork(_message.Message):
    __slots__ = ("max_local_steps",)
    MAX_LOCAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    max_local_steps: int
    def __init__(self, max_local_steps: _Optional[int] = ...) -> None: ...

class ClipAndNoise(_message.Message):
    __slots__ = ("noise_multiplier", "clipping_norm", "noise_std", "seeded")
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    CLIPPING_NORM_FIELD_NUMBER: _ClassVar[int]
    NOISE_STD_FIELD_NUMBER: _ClassVar[int]
    SEEDED_FIELD_NUMBER: _ClassVar[int]
    noise_multiplier: float
    clipping_norm: float
    noise_std: float
    seeded: bool
    def __init__(self, noise_multiplier: _Optional[float] = ..., clipping_norm: _Optional[float] = ..., noise_std: _Optional[float] = ..., seeded: _Optional[bool] = ...) -> None: ...

class SecAggWeighting(_message.Message):
    __slots__ = ("weighting",)
    WEIGHTING_FIELD_NUMBER: _ClassVar[int]
    weighting: Weighting
    def __init__(self, weighting: _Optional[_Union[Weighting, str]] = ...) -> None: ...

class DpSgd(_message.Message):
    __slots__ = ("noise_multiplier", "max_grad_norm", "delta")
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    def __init__(self, noise_multiplier: _Optional[float] = ..., max_grad_norm: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class Compression(_message.Message):
    __slots__ = ("stages",)
    STAGES_FIELD_NUMBER: _ClassVar[int]
    stages: _containers.RepeatedCompositeFieldContainer[CodecStage]
    def __init__(self, stages: _Optional[_Iterable[_Union[CodecStage, _Mapping]]] = ...) -> None: ...

class CodecStage(_message.Message):
    __slots__ = ("quantize", "topk", "randomk", "zstd")
    QUANTIZE_FIELD_NUMBER: _ClassVar[int]
    TOPK_FIELD_NUMBER: _ClassVar[int]
    RANDOMK_FIELD_NUMBER: _ClassVar[int]
    ZSTD_FIELD_NUMBER: _ClassVar[int]
    quantize: Quantize
    topk: TopK
    randomk: RandomK
    zstd: Zstd
    def __init__(self, quantize: _Optional[_Union[Quantize, _Mapping]] = ..., topk: _Optional[_Union[TopK, _Mapping]] = ..., randomk: _Optional[_Union[RandomK, _Mapping]] = ..., zstd: _Optional[_Union[Zstd, _Mapping]] = ...) -> None: ...

class Quantize(_message.Message):
    __slots__ = ("bits", "block_size")
    BITS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    bits: int
    block_size: int
    def __init__(self, bits: _Optional[int] = ..., block_size: _Optional[int] = ...) -> None: ...

class TopK(_message.Message):
    __slots__ = ("fraction",)
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    def __init__(self, fraction: _Optional[float] = ...) -> None: ...

class RandomK(_message.Message):
    __slots__ = ("fraction", "error_feedback")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    error_feedback: bool
    def __init__(self, fraction: _Optional[float] = ..., error_feedback: _Optional[bool] = ...) -> None: ...

class Zstd(_message.Message):
    __slots__ = ("level",)
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    level: int
    def __init__(self, level: _Optional[int] = ...) -> None: ...

class PrivacyBudget(_message.Message):
    __slots__ = ("epsilon_max", "delta", "min_noise_multiplier", "clipping_norm")
    EPSILON_MAX_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MIN_NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    CLIPPING_NORM_FIELD_NUMBER: _ClassVar[int]
    epsilon_max: float
    delta: float
    min_noise_multiplier: float
    clipping_norm: float
    def __init__(self, epsilon_max: _Optional[float] = ..., delta: _Optional[float] = ..., min_noise_multiplier: _Optional[float] = ..., clipping_norm: _Optional[float] = ...) -> None: ...

class Scalar(_message.Message):
    __slots__ = ("b", "i", "f", "s")
    B_FIELD_NUMBER: _ClassVar[int]
    I_FIELD_NUMBER: _ClassVar[int]
    F_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    b: bool
    i: int
    f: float
    s: str
    def __init__(self, b: _Optional[bool] = ..., i: _Optional[int] = ..., f: _Optional[float] = ..., s: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("schema_version", "client_id")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    client_id: str
    def __init__(self, schema_version: _Optional[int] = ..., client_id: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("schema_version", "run_id", "heartbeat_seconds", "server_certificate")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SERVER_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    run_id: str
    heartbeat_seconds: float
    server_certificate: bytes
    def __init__(self, schema_version: _Optional[int] = ..., run_id: _Optional[str] = ..., heartbeat_seconds: _Optional[float] = ..., server_certificate: _Optional[bytes] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("run_id", "round")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "run_id", "round", "kind", "model_version", "model_size", "seed", "config", "deadline_unix", "model_signature", "secagg_message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SECAGG_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    run_id: str
    round: int
    kind: TaskKind
    model_version: str
    model_size: int
    seed: int
    config: ClientConfig
    deadline_unix: float
    model_signature: bytes
    secagg_message: bytes
    def __init__(self, task_id: _Optional[str] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., model_version: _Optional[str] = ..., model_size: _Optional[int] = ..., seed: _Optional[int] = ..., config: _Optional[_Union[ClientConfig, _Mapping]] = ..., deadline_unix: _Optional[float] = ..., model_signature: _Optional[bytes] = ..., secagg_message: _Optional[bytes] = ...) -> None: ...

class PullTaskRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class Wait(_message.Message):
    __slots__ = ("retry_after_seconds", "reason")
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    retry_after_seconds: float
    reason: str
    def __init__(self, retry_after_seconds: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class PullTaskReply(_message.Message):
    __slots__ = ("task", "wait")
    TASK_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    task: Task
    wait: Wait
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., wait: _Optional[_Union[Wait, _Mapping]] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("model_version", "offset", "base_version", "client_id")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    offset: int
    base_version: str
    client_id: str
    def __init__(self, model_version: _Optional[str] = ..., offset: _Optional[int] = ..., base_version: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("model_version", "offset", "total_size", "data", "delta")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    offset: int
    total_size: int
    data: bytes
    delta: bool
    def __init__(self, model_version: _Optional[str] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ..., delta: _Optional[bool] = ...) -> None: ...

class ResultHeader(_message.Message):
    __slots__ = ("task_id", "client_id", "run_id", "round", "kind", "model_version", "num_examples", "metrics", "loss", "payload_size", "payload_sha256", "signature", "failure_stage", "failure_error", "failure_message", "secagg", "compressed")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_STAGE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILURE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    client_id: str
    run_id: str
    round: int
    kind: TaskKind
    model_version: str
    num_examples: int
    metrics: _containers.ScalarMap[str, float]
    loss: float
    payload_size: int
    payload_sha256: str
    signature: bytes
    failure_stage: str
    failure_error: str
    failure_message: str
    secagg: bool
    compressed: bool
    def __init__(self, task_id: _Optional[str] = ..., client_id: _Optional[str] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., model_version: _Optional[str] = ..., num_examples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., loss: _Optional[float] = ..., payload_size: _Optional[int] = ..., payload_sha256: _Optional[str] = ..., signature: _Optional[bytes] = ..., failure_stage: _Optional[str] = ..., failure_error: _Optional[str] = ..., failure_message: _Optional[str] = ..., secagg: _Optional[bool] = ..., compressed: _Optional[bool] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ResultHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ResultHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("status", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: UploadStatus
    message: str
    def __init__(self, status: _Optional[_Union[UploadStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("run_id", "round", "connected_nodes", "latest_version", "latest_metrics")
    class LatestMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_NODES_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    connected_nodes: int
    latest_version: str
    latest_metrics: _containers.ScalarMap[str, float]
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ..., connected_nodes: _Optional[int] = ..., latest_version: _Optional[str] = ..., latest_metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...
