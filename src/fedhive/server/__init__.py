"""The server side: the round loop, reply verification and run history."""

from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.orchestrator import EvaluateFn, RoundLoop, RunObserver, RunResult

__all__ = ["CohortStats", "EvaluateFn", "RoundLoop", "RoundRecord", "RunObserver", "RunResult"]
