"""How tasks reach clients and replies come back: the interface and its implementations."""

from fedhive.transport.base import CohortRunner, EvaluateOutcome, FitOutcome, Transport
from fedhive.transport.codec import UploadStatus
from fedhive.transport.inprocess import InProcessTransport

__all__ = [
    "CohortRunner",
    "EvaluateOutcome",
    "FitOutcome",
    "InProcessTransport",
    "Transport",
    "UploadStatus",
]
