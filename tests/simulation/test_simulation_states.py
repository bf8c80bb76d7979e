"""The client state store: SQLite survives a process restart; both backends use it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import counting_app
import numpy as np
import pytest

import fedhive
from fedhive import ClientConfig, Context, FitResult, SimulationApp, Weights
from fedhive.client.app import ClientApp
from fedhive.config import parse_config
from fedhive.config.simulated import Backend, StateBackend
from fedhive.errors import ConfigError
from fedhive.simulation.engine import run_simulation
from fedhive.simulation.states import (
    MemoryStateStore,
    SqliteStateStore,
    StateStore,
    load_state,
    open_store,
)
from fedhive.strategy.algorithm import Algorithm


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_store_returns_what_was_put_last(kind: str, tmp_path: Path) -> None:
    store: StateStore = (
        MemoryStateStore() if kind == "memory" else SqliteStateStore(tmp_path / "s.db")
    )
    assert store.get("a") is None
    store.put("a", b"1")
    store.put("b", b"2")
    store.put("a", b"3")
    assert (store.get("a"), store.get("b"), store.get("c")) == (b"3", b"2", None)
    store.close()


def test_sqlite_states_survive_the_process_that_wrote_them_dying(tmp_path: Path) -> None:
    path = tmp_path / "states.db"
    writer = textwrap.dedent(
        f"""
        import os
        import numpy as np
        from fedhive.core.serde import record_to_bytes
        from fedhive.simulation.states import SqliteStateStore
        store = SqliteStateStore({str(path)!r})
        for i in range(3):
            store.put(f"c{{i}}", record_to_bytes({{"calls": i, "r": np.arange(4.0) * i}}))
        os._exit(0)  # no close, no checkpoint: as if the process were killed
        """
    )
    src = str(Path(fedhive.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=60, env=env)
    store = SqliteStateStore(path)
    assert len(store) == 3
    state = load_state(store, "c2")
    assert state["calls"] == 2
    np.testing.assert_array_equal(state["r"], np.arange(4.0) * 2)
    assert load_state(store, "c9") == {}
    store.close()


def test_open_store_resolves_the_path_against_the_config_folder(tmp_path: Path) -> None:
    store = open_store(StateBackend.SQLITE, "out/states.db", base_dir=tmp_path)
    assert isinstance(store, SqliteStateStore)
    assert store.path == tmp_path / "out/states.db"
    store.close()
    temporary = open_store(StateBackend.SQLITE, base_dir=tmp_path)
    assert isinstance(temporary, SqliteStateStore)
    assert temporary.path.parent != tmp_path
    temporary.close()
    assert not temporary.path.parent.exists()
    run_dir = tmp_path / "run"
    first = open_store(StateBackend.SQLITE, base_dir=tmp_path, run_dir=run_dir)
    first.put("a", b"1")
    first.close()
    again = open_store(StateBackend.SQLITE, base_dir=tmp_path, run_dir=run_dir)
    assert again.get("a") is None  # the run folder's store starts afresh: reruns reproduce
    again.close()
    kept = open_store(StateBackend.SQLITE, str(run_dir / "states.db"), base_dir=tmp_path)
    kept.put("a", b"2")
    kept.close()
    kept = open_store(StateBackend.SQLITE, str(run_dir / "states.db"), base_dir=tmp_path)
    assert kept.get("a") == b"2"  # a named file is kept across runs
    kept.close()
    assert isinstance(open_store(StateBackend.MEMORY, base_dir=tmp_path), MemoryStateStore)


def _run(backend: Backend, states: StateStore, rounds: int = 2) -> str:
    result = run_simulation(
        counting_app.build(6),
        strategy=Algorithm(),
        rounds=rounds,
        seed=3,
        backend=backend,
        states=states,
    )
    return result.version


@pytest.mark.parametrize("backend", [Backend.LOCAL, Backend.PROCESS])
def test_a_second_run_on_the_same_file_continues_each_clients_state(
    backend: Backend, tmp_path: Path
) -> None:
    path = tmp_path / "states.db"
    _run(backend, SqliteStateStore(path))  # the backend closes the store it was given
    _run(backend, SqliteStateStore(path))
    store = SqliteStateStore(path)
    for client_id in counting_app.build(6).client_ids:
        state = load_state(store, client_id)
        assert state["calls"] == 4
        np.testing.assert_array_equal(state["residual"], np.full(8, 4, np.float32))
    store.close()


@pytest.mark.parametrize("backend", [Backend.LOCAL, Backend.PROCESS])
def test_memory_and_sqlite_stores_give_the_same_model(backend: Backend, tmp_path: Path) -> None:
    assert _run(backend, MemoryStateStore(), 3) == _run(
        backend, SqliteStateStore(tmp_path / "s.db"), 3
    )


def test_clients_that_keep_no_state_store_nothing() -> None:
    class Stateless(counting_app.StatefulClient):
        def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
            return FitResult(delta=Weights({"w": np.ones(8, np.float32)}), num_examples=1)

    app = counting_app.build(4)
    app = SimulationApp(
        server=app.server, client=ClientApp(client_fn=Stateless), client_ids=app.client_ids
    )
    store = MemoryStateStore()
    run_simulation(app, strategy=Algorithm(), rounds=2, states=store)
    assert len(store) == 0
    assert len(MemoryStateStore()) == 0


def test_the_config_names_the_store_and_refuses_an_unknown_one() -> None:
    base = {"run": {"app": "app:build", "rounds": 1}}
    config = parse_config({**base, "simulation": {"state": "sqlite", "state_path": "s.db"}})
    assert config.simulation.state == StateBackend.SQLITE
    assert config.simulation.state_path == "s.db"
    assert parse_config(base).simulation.state == StateBackend.MEMORY
    with pytest.raises(ConfigError, match="state"):
        parse_config({**base, "simulation": {"state": "redis"}})
