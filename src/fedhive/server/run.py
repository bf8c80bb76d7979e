"""What a run is, for both the round loop and the asynchronous loop: the interfaces that
make it durable and observable, its result, and the model names it accepts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from fedhive.core.version import ModelVersion
from fedhive.core.weights import AUX_PREFIX, Weights
from fedhive.errors import ConfigError
from fedhive.server.history import RoundRecord
from fedhive.strategy.state import StrategyState

EvaluateFn = Callable[[Weights], Mapping[str, float]]
"""Centralised evaluation on a server-side test set: weights → metrics (``loss``, …)."""


class Checkpoint(Protocol):
    """Makes rounds durable: told when a round begins, when it accounted a release, and
    what it ended with."""

    def begin(self, round: int) -> None:
        """A round starts (an interrupted attempt of it is superseded)."""

    def accounted(self, round: int, state: StrategyState) -> None:
        """The open round released something and ``state`` holds its privacy event:
        persist it now, so a restart that re-runs the round still counts this release
        (the round loop calls it right after accounting, before evaluation; the
        asynchronous loop accounts no privacy and never calls it)."""

    def end(self, record: RoundRecord, model: ModelVersion, state: StrategyState) -> None:
        """A round ended: persist the (new or unchanged) model version (its bytes as
        the loop made them) and strategy state."""


class RunObserver(Protocol):
    """Receives progress events (the CLI draws them; files are written from them)."""

    def round_started(self, round: int, num_tasks: int) -> None:
        """A round dispatched ``num_tasks`` fit tasks."""

    def client_finished(self, round: int, ok: bool) -> None:
        """One fit task of the round ended, successfully or not."""

    def round_finished(self, record: RoundRecord) -> None:
        """A round ended (committed or not)."""


class Observers:
    """Several run observers, told of each event in order."""

    def __init__(self, *observers: RunObserver) -> None:
        self._observers = observers

    def round_started(self, round: int, num_tasks: int) -> None:
        """Tell each observer."""
        for observer in self._observers:
            observer.round_started(round, num_tasks)

    def client_finished(self, round: int, ok: bool) -> None:
        """Tell each observer."""
        for observer in self._observers:
            observer.client_finished(round, ok)

    def round_finished(self, record: RoundRecord) -> None:
        """Tell each observer."""
        for observer in self._observers:
            observer.round_finished(record)


@dataclass(frozen=True)
class RunResult:
    """The final model, its version, the strategy state and every round's record."""

    weights: Weights
    version: str
    state: StrategyState
    history: tuple[RoundRecord, ...]
    stop_reason: str = ""
    """Why the run ended before its last round (e.g. its privacy budget); "" if it did not."""


def check_parameter_names(weights: Weights) -> None:
    """Refuse model parameters named like auxiliary tensors.

    Raises:
        ConfigError: a parameter name starts with ``@`` (reserved for auxiliary tensors
            such as SCAFFOLD's control variates).
    """
    reserved = [name for name in weights if name.startswith(AUX_PREFIX)]
    if reserved:
        raise ConfigError(f"parameter names may not start with {AUX_PREFIX!r}: {reserved}")
