"""The server side: the round loop, reply verification and run history."""

from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.rules import check_run
from fedhive.server.run import EvaluateFn, RunObserver, RunResult
from fedhive.server.verify import ReplyPolicy

__all__ = [
    "CohortStats",
    "EvaluateFn",
    "ReplyPolicy",
    "RoundLoop",
    "RoundRecord",
    "RunObserver",
    "RunResult",
    "check_run",
]
