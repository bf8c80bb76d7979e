"""Privacy accounting as a step of the round loop, at the round's real participation.

A DP strategy cannot account a round alone: only the round loop knows how many clients
it really selected (over-selection, the ``min_fit_clients`` floor and replacement waves
for budget refusals all add to ``fraction_fit``) and whether the round released noisy
updates even though it then failed (distributed DP: the devices' noisy sum was unmasked,
then too few clients remained, or the aggregate was unusable). So a strategy that
accounts privacy (:class:`PrivacyAccounting`) is asked twice by the loop:

1. :meth:`~PrivacyAccounting.check_budget` before it dispatches a cohort, with the
   participation that cohort would bring the round to (a refusal stops the run, or
   skips a replacement wave);
2. :meth:`~PrivacyAccounting.account` once the round ended, committed or not, with the
   participation it reached: it returns the state with the round's event (kept even when
   the round failed) and the round's :class:`PrivacyReport`, which the round record
   carries (never client metrics: nothing a client reports can become the run's epsilon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fedhive.privacy import GaussianEvent
from fedhive.strategy.state import StrategyState


@dataclass(frozen=True, kw_only=True)
class PrivacyReport:
    """A round's privacy outcome: the run's epsilon so far, and what the round released.

    Attributes:
        epsilon: the epsilon the run has spent so far, this round included, at ``delta``.
        delta: the delta at which ``epsilon`` is computed (the run's ``target_delta``).
        events: the Gaussian mechanisms this round released (none: it released nothing).
        clipping_norm: the L2 clipping norm the round's updates were held to (None: the
            round aggregated nothing).
        unclipped_fraction: the fraction of updates the server's clipping left as they
            were (central DP; None otherwise), which adaptive clipping steers.
    """

    epsilon: float
    delta: float
    events: tuple[GaussianEvent, ...] = ()
    clipping_norm: float | None = None
    unclipped_fraction: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``epsilon``, ``delta``, ``events``, and the clipping
        figures the round has."""
        data: dict[str, Any] = {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "events": [event.to_dict() for event in self.events],
        }
        if self.clipping_norm is not None:
            data["clipping_norm"] = self.clipping_norm
        if self.unclipped_fraction is not None:
            data["unclipped_fraction"] = self.unclipped_fraction
        return data


@dataclass(frozen=True)
class Participation:
    """How many clients a round selected, out of how many it could have selected.

    ``sample_rate`` is the probability that any one available client was selected: the
    q at which the round is accounted.
    """

    selected: int
    available: int

    @property
    def sample_rate(self) -> float:
        """selected / available, at most 1 (0 when none was available)."""
        return min(1.0, self.selected / self.available) if self.available else 0.0

    def plus(self, more: int) -> Participation:
        """The participation after ``more`` clients of the same population joined."""
        return Participation(self.selected + more, self.available)


@runtime_checkable
class PrivacyAccounting(Protocol):
    """A strategy that accounts each round's privacy loss (an algorithm with DP)."""

    def check_budget(self, state: StrategyState, round: int, participation: Participation) -> None:
        """Refuse a round that, at ``participation``, would exceed the run's budget.

        Raises:
            PrivacyBudgetError: accounting the round would exceed the target epsilon.
        """
        ...

    def account(
        self,
        state: StrategyState,
        round: int,
        participation: Participation,
        *,
        committed: bool,
    ) -> tuple[StrategyState, PrivacyReport | None]:
        """``state`` with the round's privacy event if the round released anything (a
        committed round always did; a failed one may have), and the round's report
        (None: the strategy accounts no privacy)."""
        ...
