"""Pure values, no I/O: weights, messages, serialization, random streams."""

from fedhive.core.extensions import (
    ClipAndNoise,
    DpSgd,
    Extension,
    PartialWork,
    Proximal,
    SecAggWeighting,
    Weighting,
)
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    ClientConfig,
    EvaluateReply,
    EvaluateResult,
    EvaluateTask,
    Failure,
    FitReply,
    FitResult,
    FitTask,
    PrivacyBudget,
)
from fedhive.core.rng import SeedStream, run_stream
from fedhive.core.serde import (
    model_version,
    record_from_bytes,
    record_to_bytes,
    weights_from_bytes,
    weights_to_bytes,
)
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Layout, Weights

__all__ = [
    "ClientConfig",
    "ClipAndNoise",
    "DpSgd",
    "EvaluateReply",
    "EvaluateResult",
    "EvaluateTask",
    "Extension",
    "Failure",
    "FailureKind",
    "FitReply",
    "FitResult",
    "FitTask",
    "Layout",
    "ModelVersion",
    "PartialWork",
    "PrivacyBudget",
    "Proximal",
    "SecAggWeighting",
    "SeedStream",
    "Stage",
    "Weighting",
    "Weights",
    "model_version",
    "record_from_bytes",
    "record_to_bytes",
    "run_stream",
    "weights_from_bytes",
    "weights_to_bytes",
]
