"""StoreCheckpoint: a restarted server resumes, and the run's totals span its processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedhive.core.weights import Weights
from fedhive.server.checkpoint import StoreCheckpoint
from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.store import StateStore

INITIAL = Weights({"w": np.zeros(3, np.float32)})


def open_checkpoint(store: StateStore) -> StoreCheckpoint:
    checkpoint, _resumed = StoreCheckpoint.open(
        store,
        new_run_id="run",
        strategy="fedavg",
        seed=0,
        config={},
        initial=INITIAL,
        initial_state={},
    )
    return checkpoint


def finish(checkpoint: StoreCheckpoint, rnd: int, *, committed: bool) -> None:
    fit = CohortStats(selected=2, succeeded=1, failed=1, bytes_down=100, bytes_up=40)
    fit.contributors.append("c1")
    record = RoundRecord(
        round=rnd,
        seconds=1.0,
        committed=committed,
        version="",
        fit=fit,
        evaluate=CohortStats(),
        train={},
        centralized={},
        federated={},
        note="" if committed else "too few clients",
    )
    checkpoint.begin(rnd)
    checkpoint.end(record, Weights({"w": np.full(3, rnd, np.float32)}), {})


def test_totals_count_the_rounds_and_traffic_of_every_server_process(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        first = open_checkpoint(store)
        finish(first, 1, committed=True)
        finish(first, 2, committed=False)
    with StateStore(tmp_path) as store:  # the server restarted
        second = open_checkpoint(store)
        assert second.run_id == first.run_id
        finish(second, 3, committed=True)
        totals = second.totals()
    assert (totals.last_round, totals.committed_rounds, totals.restarts) == (3, 2, 1)
    assert (totals.bytes_up, totals.bytes_down, totals.clients_failed) == (120, 300, 3)
