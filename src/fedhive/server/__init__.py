"""The server side: the round loop, reply verification and run history."""

from fedhive.server.app import ServerApp
from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.rules import check_run
from fedhive.server.run import EvaluateFn, Observers, RunObserver, RunResult
from fedhive.server.settings import ServerSection
from fedhive.server.verify import ReplyPolicy

__all__ = [
    "CohortStats",
    "EvaluateFn",
    "Observers",
    "ReplyPolicy",
    "RoundLoop",
    "RoundRecord",
    "RunObserver",
    "RunResult",
    "ServerApp",
    "ServerSection",
    "check_run",
]
