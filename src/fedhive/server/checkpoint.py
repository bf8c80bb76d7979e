"""Durable rounds: every round's outcome goes to the state store before the next begins.

A restarted server finds the newest run in its state folder and resumes after its last
closed round, committed or aborted, with the last committed model and the strategy state
the last closed round ended with, which is where an uninterrupted run went on from. A
round that did not commit keeps its strategy state: in distributed DP its noisy sum may
have been unmasked, and its privacy event must survive a crash before the next commit.
The round numbers, and so the random streams, continue where they stopped, so a resumed
run ends with the model (and the epsilon) an uninterrupted one would have. A round still
open at the crash runs again under its number: from the last closed round's strategy
state, or, if it had already accounted a release (:meth:`StoreCheckpoint.accounted`:
its noisy sum was unmasked, then the server died while it evaluated), from that
accounted state, so the re-run adds its own event on top of the first (its devices
released twice). Each start of a server process is
recorded, and each closed round keeps its traffic, so :meth:`StoreCheckpoint.totals`
describes the whole run however often it was restarted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedhive.core.serde import weights_from_bytes
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.server.history import RoundRecord
from fedhive.server.store import RoundTraffic, RunTotals, StateStore
from fedhive.strategy.state import StrategyState, state_from_bytes, state_to_bytes


@dataclass(frozen=True)
class Resumed:
    """Where a run continues: after ``round``, from these weights and strategy state."""

    run_id: str
    round: int
    weights: Weights
    state: StrategyState


class StoreCheckpoint:
    """A :class:`~fedhive.server.orchestrator.Checkpoint` backed by a :class:`StateStore`."""

    def __init__(self, store: StateStore, *, run_id: str, strategy: str) -> None:
        self._store = store
        self.run_id = run_id
        self._strategy = strategy
        self._version: str | None = None

    @classmethod
    def open(
        cls,
        store: StateStore,
        *,
        new_run_id: str,
        strategy: str,
        seed: int,
        config: Mapping[str, Any],
        initial: Weights,
        initial_state: StrategyState,
    ) -> tuple[StoreCheckpoint, Resumed]:
        """Resume the store's newest run, or start ``new_run_id`` from ``initial``; either
        way, record this start of a server process."""
        runs = store.run_ids()
        if runs:
            checkpoint = cls(store, run_id=runs[-1], strategy=strategy)
            resumed = checkpoint.resume()
            if resumed is not None:
                store.record_start(checkpoint.run_id)
                return checkpoint, resumed
        checkpoint = cls(store, run_id=new_run_id, strategy=strategy)
        store.create_run(new_run_id, seed=seed, config=config)
        store.open_round(new_run_id, 0)  # the initial model is round 0
        checkpoint._commit(0, ModelVersion.of(initial), initial_state, contributors=(), metrics={})
        store.record_start(new_run_id)
        return checkpoint, Resumed(new_run_id, 0, initial, initial_state)

    def resume(self) -> Resumed | None:
        """Where this run continues (after its last closed round), or None before its
        first commit."""
        point = self._store.resume_point(self.run_id)
        if point is None:
            return None
        self._version = point.version
        return Resumed(
            self.run_id,
            point.round,
            weights_from_bytes(point.weights_bytes),
            state_from_bytes(point.strategy_state),
        )

    def begin(self, round: int) -> None:
        """Open the round in the store (superseding an interrupted attempt)."""
        self._store.open_round(self.run_id, round)

    def accounted(self, round: int, state: StrategyState) -> None:
        """Keep the state the open round accounted its release in, before it closes."""
        self._store.account_round(self.run_id, round, strategy_state=state_to_bytes(state))

    def end(self, record: RoundRecord, model: ModelVersion, state: StrategyState) -> None:
        """Commit the round's model (the bytes the loop made) and state, or keep its
        state and why it was not committed (the model stays the last committed one)."""
        traffic = RoundTraffic(
            bytes_up=record.fit.bytes_up,
            bytes_down=record.fit.bytes_down,
            clients_failed=record.fit.failed,
        )
        if not record.committed:
            self._store.abort_round(
                self.run_id,
                record.round,
                reason=record.note or "aborted",
                strategy_state=state_to_bytes(state),
                traffic=traffic,
            )
            return
        metrics = {f"centralized.{k}": v for k, v in record.centralized.items()}
        metrics.update({f"train.{k}": v for k, v in record.train.items()})
        self._commit(
            record.round,
            model,
            state,
            contributors=record.fit.contributors,
            metrics=metrics,
            traffic=traffic,
        )

    def totals(self) -> RunTotals:
        """The run's figures over every server process that worked on it."""
        return self._store.run_totals(self.run_id)

    def _commit(
        self,
        round_: int,
        model: ModelVersion,
        state: StrategyState,
        *,
        contributors: Any,
        metrics: Mapping[str, float],
        traffic: RoundTraffic | None = None,
    ) -> None:
        self._version = self._store.commit_round(
            self.run_id,
            round_,
            weights_bytes=model.data,
            version=model.digest,
            parent_version=self._version,
            strategy_state=state_to_bytes(state),
            strategy=self._strategy,
            contributors=contributors,
            metrics=metrics,
            traffic=traffic or RoundTraffic(),
        )
