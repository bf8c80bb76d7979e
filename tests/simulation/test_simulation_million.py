"""A million virtual clients: selection reads only the selected ids, builds only the
selected clients, and the driver's memory does not hold the million."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from tests.simulation import counting_app

from fedhive.config.simulated import Backend
from fedhive.simulation.engine import run_simulation
from fedhive.simulation.states import SqliteStateStore, load_state
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
