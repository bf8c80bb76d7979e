"""A million virtual clients: selection reads only the selected ids, builds only the
selected clients, and the driver's memory does not hold the million."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import counting_app
import numpy as np
import pytest

from fedhive.config.simulated import Backend
from fedhive.core.ids import VirtualClientIds
from fedhive.simulation.engine import run_simulation
from fedhive.simulation.states import SqliteStateStore, load_state
from fedhive.strategy import fedbuff
from fedhive.strategy.algorithm import Algorithm

MILLION = 1_000_000
PER_ROUND = 100
ROUNDS = 3


@pytest.mark.parametrize("backend", [Backend.LOCAL, Backend.PROCESS])
def test_selection_from_a_million_clients_does_not_materialise_them(
    backend: Backend, tmp_path: Path
) -> None:
    app = counting_app.build(MILLION)
    counting_app.CountingIds.made = 0
    counting_app.StatefulClient.built = 0
    store = SqliteStateStore(tmp_path / "states.db")
    tracemalloc.start()
    try:
        result = run_simulation(
            app,
            strategy=Algorithm(fraction_fit=PER_ROUND / MILLION, min_available_clients=MILLION),
            rounds=ROUNDS,
            seed=11,
            backend=backend,
            states=store,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.fit.succeeded for r in result.history] == [PER_ROUND] * ROUNDS
    # Each selected id is made once by the sampler (and a few by the test's reads);
    # materialising the population would make a million.
    assert counting_app.CountingIds.made <= 2 * PER_ROUND * ROUNDS
    if backend == Backend.LOCAL:  # a process backend builds its clients in the workers
        assert counting_app.StatefulClient.built == PER_ROUND * ROUNDS
    # A million id strings alone would take ~60 MB of Python objects.
    assert peak < 16 * 2**20, f"the driver allocated {peak / 2**20:.1f} MiB at peak"
    reopened = SqliteStateStore(tmp_path / "states.db")
    assert len(reopened) >= PER_ROUND
    chosen = result.history[-1].fit.contributors[0]
    assert load_state(reopened, chosen)["calls"] >= 1
    reopened.close()


def test_fedbuff_refills_from_a_million_clients_without_materialising_them() -> None:
    app = counting_app.build(MILLION)
    counting_app.CountingIds.made = 0
    result = run_simulation(app, strategy=fedbuff(buffer_size=10, concurrency=20), rounds=3, seed=2)
    assert len(result.history) == 3
    assert counting_app.CountingIds.made <= 4 * (20 + 3 * 10)


def test_fedbuff_refill_picks_the_same_clients_from_lazy_ids_and_their_list() -> None:
    algorithm = fedbuff(buffer_size=5, concurrency=30)
    lazy = VirtualClientIds(500)
    state = algorithm.initial_state(counting_app.INITIAL)
    busy = {lazy[3], lazy[250], lazy[499]}
    picks = [
        algorithm.configure_refill(state, ids, busy, np.random.default_rng(4))
        for ids in (lazy, list(reversed(list(lazy))))
    ]
    assert picks[0] == picks[1]
    assert not busy & {i.client_id for i in picks[0]}
