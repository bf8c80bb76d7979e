"""The server's state store: migrations, all-or-nothing commits, resume, lineage, crashes."""

from __future__ import annotations

import hashlib
import itertools
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from fedhive.core.serde import (
    model_version,
    record_from_bytes,
    record_to_bytes,
    sha256_hex,
    weights_to_bytes,
)
from fedhive.core.weights import Weights
from fedhive.errors import SerializationError, StoreError
from fedhive.server.store import (
    DATABASE_NAME,
    RoundState,
    RoundTraffic,
    StateStore,
    verify_chain,
)
from fedhive.server.store.database import migrations

RUN = "run-1"


def weights(value: float) -> Weights:
    return Weights({"w": np.full((2, 3), value, np.float32), "b": np.arange(3.0) + value})


def state_bytes(step: int) -> bytes:
    return record_to_bytes({"step": step, "m": np.full(3, float(step))})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    ticks = itertools.count(1_700_000_000)
    with StateStore(tmp_path / "state", clock=lambda: float(next(ticks))) as opened:
        opened.create_run(RUN, seed=7, config={"strategy": {"name": "fedavg"}, "rounds": 3})
        yield opened


def commit_bytes(
    store: StateStore, rnd: int, weights_bytes: bytes, parent: str | None, state: bytes = b"s"
) -> str:
    return store.commit_round(
        RUN,
        rnd,
        weights_bytes=weights_bytes,
        version=sha256_hex(weights_bytes),
        parent_version=parent,
        strategy_state=state,
        strategy="fedavg",
        contributors=[f"client-{rnd}-b", f"client-{rnd}-a"],
        metrics={"loss": 1.0 / (rnd + 1)},
    )


def commit(store: StateStore, rnd: int, value: float, parent: str | None) -> str:
    store.open_round(RUN, rnd)
    return commit_bytes(store, rnd, weights_to_bytes(weights(value)), parent, state_bytes(rnd))


def raw_query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def test_a_new_store_has_every_migration_applied_in_wal_mode(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        assert store.schema_version == len(migrations()) >= 1
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {
        row[0] for row in raw_query(tmp_path / DATABASE_NAME, "SELECT name FROM sqlite_master")
    }
    expected = {"runs", "rounds", "model_versions", "strategy_state", "audit", "audit_heads"}
    assert expected | {"server_starts"} <= tables
    assert not {"tasks", "results", "nodes"} & tables  # never written: dropped in 0002


def test_reopening_applies_nothing_twice_and_keeps_the_data(store: StateStore) -> None:
    version = commit(store, 0, 0.5, None)
    schema = raw_query(store.state_dir / DATABASE_NAME, "SELECT sql FROM sqlite_master")
    store.close()
    for _ in range(2):
        with StateStore(store.state_dir) as again:
            assert again.schema_version == len(migrations())
            assert (
                raw_query(again.state_dir / DATABASE_NAME, "SELECT sql FROM sqlite_master")
                == schema
            )
            latest = again.latest_committed(RUN)
            assert latest is not None
            assert latest.version == version


def test_a_store_newer_than_this_fedhive_is_refused(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    with closing(sqlite3.connect(tmp_path / DATABASE_NAME)) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreError, match="newer"):
        StateStore(tmp_path)


def test_commit_then_reopen_resumes_from_exactly_what_was_committed(store: StateStore) -> None:
    v0 = commit(store, 0, 0.0, None)
    v1 = commit(store, 1, 1.0, v0)
    store.close()
    with StateStore(store.state_dir) as reopened:
        latest = reopened.latest_committed(RUN)
    assert latest is not None
    assert latest.round == 1
    assert latest.weights_bytes == weights_to_bytes(weights(1.0))
    assert latest.version == v1 == hashlib.sha256(latest.weights_bytes).hexdigest()
    assert latest.version == model_version(weights(1.0))
    assert latest.strategy_state == state_bytes(1)
    assert record_from_bytes(latest.strategy_state)["step"] == 1
    assert latest.metrics == {"loss": 0.5}


def test_a_run_without_commits_has_nothing_to_resume(store: StateStore) -> None:
    assert store.latest_committed(RUN) is None
    assert store.resume_point(RUN) is None
    store.open_round(RUN, 0)
    assert store.latest_committed(RUN) is None
    assert store.resume_point(RUN) is None
    assert store.load_run(RUN) is not None
    assert store.load_run("other") is None


def test_a_restart_continues_after_an_aborted_round_with_the_state_it_ended_with(
    store: StateStore,
) -> None:
    v0 = commit(store, 0, 0.0, None)
    v1 = commit(store, 1, 1.0, v0)
    store.open_round(RUN, 2)
    store.abort_round(RUN, 2, reason="too few clients", strategy_state=state_bytes(2))
    store.close()
    with StateStore(store.state_dir) as reopened:
        point = reopened.resume_point(RUN)
        assert point is not None
        assert (point.round, point.version) == (2, v1)  # after round 2, from round 1's model
        assert point.weights_bytes == weights_to_bytes(weights(1.0))
        assert point.strategy_state == state_bytes(2)  # what the aborted round ended with
        with pytest.raises(StoreError, match="aborted"):
            reopened.open_round(RUN, 2)
        reopened.open_round(RUN, 3)
        assert commit_existing(reopened, 3, v1) == model_version(weights(3.0))
        assert reopened.verify_audit().ok


def test_a_restart_reruns_an_open_round_that_accounted_a_release_from_that_state(
    store: StateStore,
) -> None:
    v0 = commit(store, 0, 0.0, None)
    v1 = commit(store, 1, 1.0, v0)
    store.open_round(RUN, 2)
    point = store.resume_point(RUN)
    assert point is not None
    assert point.strategy_state == state_bytes(1)  # nothing released yet
    store.account_round(RUN, 2, strategy_state=state_bytes(2))  # then the server dies
    with pytest.raises(StoreError, match="not open"):
        store.account_round(RUN, 1, strategy_state=state_bytes(2))
    store.close()
    with StateStore(store.state_dir) as reopened:
        point = reopened.resume_point(RUN)
        assert point is not None
        assert (point.round, point.version) == (1, v1)  # round 2 again, from round 1's model
        assert point.strategy_state == state_bytes(2)  # with round 2's release counted
        reopened.open_round(RUN, 2)
        assert reopened.resume_point(RUN) == point  # a second crash still counts it
        commit_existing(reopened, 2, v1)
        point = reopened.resume_point(RUN)
        assert point is not None
        assert point.round == 2
        assert reopened.verify_audit().ok


def test_a_round_before_the_last_closed_one_cannot_open(store: StateStore) -> None:
    commit(store, 0, 0.0, None)
    store.open_round(RUN, 2)
    store.abort_round(RUN, 2, reason="too few clients", strategy_state=state_bytes(2))
    with pytest.raises(StoreError, match="round 2 has closed"):
        store.open_round(RUN, 1)


def test_a_round_an_older_fedhive_aborted_resumes_with_the_state_before_it(
    store: StateStore,
) -> None:
    commit(store, 0, 0.0, None)
    store.open_round(RUN, 1)
    store.abort_round(RUN, 1, reason="too few clients", strategy_state=state_bytes(1))
    db = store.state_dir / DATABASE_NAME
    with closing(sqlite3.connect(db)) as conn:  # what an older fedhive kept: no state
        conn.execute("DELETE FROM strategy_state WHERE round = 1")
        conn.commit()
    point = store.resume_point(RUN)
    assert point is not None
    assert (point.round, point.strategy_state) == (1, state_bytes(0))


def test_lineage_walks_parents_back_to_the_initial_model(store: StateStore) -> None:
    v0 = commit(store, 0, 0.0, None)
    v1 = commit(store, 1, 1.0, v0)
    v2 = commit(store, 2, 2.0, v1)
    chain = store.lineage(v2)
    assert [m.version for m in chain] == [v2, v1, v0]
    assert [m.round for m in chain] == [2, 1, 0]
    assert [m.parent_version for m in chain] == [v1, v0, None]
    assert chain[0].contributors == ("client-2-a", "client-2-b")
    assert chain[0].strategy == "fedavg"
    with pytest.raises(StoreError, match="unknown"):
        store.lineage("f" * 64)


def test_weights_committed_again_are_the_same_version_with_their_first_lineage(
    store: StateStore,
) -> None:
    v0 = commit(store, 0, 0.0, None)
    v1 = commit(store, 1, 1.0, v0)
    again = commit(store, 2, 1.0, v1)  # the round changed nothing
    assert again == v1
    assert [m.version for m in store.lineage(v1)] == [v1, v0]
    latest = store.latest_committed(RUN)
    assert latest is not None
    assert (latest.round, latest.version) == (2, v1)


def test_commit_needs_an_open_round_and_a_known_parent(store: StateStore) -> None:
    v0 = commit(store, 0, 0.0, None)
    with pytest.raises(StoreError, match="committed"):
        commit(store, 0, 3.0, None)  # reopening a committed round
    store.open_round(RUN, 1)
    with pytest.raises(StoreError, match="parent"):
        commit_bytes(store, 1, b"w", "e" * 64)
    assert [r.state for r in store.rounds(RUN)] == [RoundState.COMMITTED, RoundState.OPEN]
    with pytest.raises(StoreError):
        store.lineage(hashlib.sha256(b"w").hexdigest())  # the refused commit left no row
    store.abort_round(RUN, 1, reason="not enough clients", strategy_state=b"s")
    with pytest.raises(StoreError, match="aborted"):
        commit_bytes(store, 1, b"w", v0)
    with pytest.raises(StoreError, match="aborted"):
        store.open_round(RUN, 1)


def test_an_interrupted_open_round_reopens_under_its_number(store: StateStore) -> None:
    v0 = commit(store, 0, 0.0, None)
    store.open_round(RUN, 1)
    store.open_round(RUN, 1)  # the restarted server runs round 1 again
    kinds = raw_query(store.state_dir / DATABASE_NAME, "SELECT kind FROM audit ORDER BY seq")
    assert [k for (k,) in kinds][-2:] == ["round_opened", "round_reopened"]
    assert commit_existing(store, 1, v0) == model_version(weights(1.0))


def commit_existing(store: StateStore, rnd: int, parent: str) -> str:
    return commit_bytes(store, rnd, weights_to_bytes(weights(float(rnd))), parent)


def test_totals_cover_every_closed_round_and_every_start(store: StateStore) -> None:
    store.record_start(RUN)
    v0 = commit(store, 0, 0.0, None)
    traffic = RoundTraffic(bytes_up=10, bytes_down=20, clients_failed=1)
    store.open_round(RUN, 1)
    model = weights_to_bytes(weights(1.0))
    v1 = store.commit_round(
        RUN,
        1,
        weights_bytes=model,
        version=sha256_hex(model),
        parent_version=v0,
        strategy_state=b"s",
        strategy="fedavg",
        contributors=["c1"],
        metrics={},
        traffic=traffic,
    )
    store.record_start(RUN)  # a restart
    store.open_round(RUN, 2)
    store.abort_round(RUN, 2, reason="too few clients", strategy_state=b"s", traffic=traffic)
    store.open_round(RUN, 3)  # still open: not counted
    totals = store.run_totals(RUN)
    assert (totals.last_round, totals.committed_rounds, totals.restarts) == (2, 1, 1)
    assert (totals.bytes_up, totals.bytes_down, totals.clients_failed) == (20, 40, 2)
    assert totals.created_at == store.load_run(RUN).created_at  # type: ignore[union-attr]
    assert v1


def test_a_corrupted_model_blob_is_refused_on_resume(store: StateStore) -> None:
    version = commit(store, 0, 0.0, None)
    path = store.blobs.root / version[:2] / version[2:]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SerializationError, match="corrupt"):
        store.latest_committed(RUN)


def test_a_closed_store_raises_store_errors(store: StateStore) -> None:
    store.close()
    with pytest.raises(StoreError):
        store.load_run(RUN)


# The child reopens the store and commits round 2, but is killed at a chosen point.
_CRASHING_COMMIT = textwrap.dedent(
    """
    import hashlib, os, signal, sys
    from contextlib import contextmanager
    from pathlib import Path
    from fedhive.server.store import StateStore, rounds, state

    state_dir, point, weights_path, parent = sys.argv[1:]
    model = Path(weights_path).read_bytes()

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    real_transaction = state.transaction

    @contextmanager
    def killed_before_transaction(conn):
        die()
        yield conn

    @contextmanager
    def killed_after_commit(conn):
        with real_transaction(conn) as inside:
            yield inside
        die()

    real_append = rounds.append_entry

    def killed_before_commit(conn, **kwargs):
        real_append(conn, **kwargs)  # every statement of the commit has run
        die()

    if point == "after-blobs":
        state.transaction = killed_before_transaction
    elif point == "before-commit":
        rounds.append_entry = killed_before_commit
    else:
        state.transaction = killed_after_commit
    store = StateStore(state_dir)
    store._conn.execute("PRAGMA cache_size = 1")  # spill uncommitted pages to the WAL
    store.commit_round(
        "run-1", 2, weights_bytes=model, version=hashlib.sha256(model).hexdigest(),
        parent_version=parent,
        strategy_state=b"state after round 2", strategy="fedavg", contributors=["c"],
        metrics={"loss": 0.1},
    )
    sys.exit(3)  # not reached: the child was killed
    """
)


@pytest.mark.parametrize("point", ["after-blobs", "before-commit", "after-commit"])
def test_a_commit_killed_midway_is_all_or_nothing(
    store: StateStore, tmp_path: Path, point: str
) -> None:
    v0 = commit(store, 0, 0.0, None)
    v1 = commit(store, 1, 1.0, v0)
    store.open_round(RUN, 2)
    entries_before = store.verify_audit().entries
    store.close()
    new_weights = weights_to_bytes(weights(2.0))
    (tmp_path / "w2").write_bytes(new_weights)
    args = [str(store.state_dir), point, str(tmp_path / "w2"), v1]
    child = subprocess.run(
        [sys.executable, "-c", _CRASHING_COMMIT, *args], capture_output=True, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    db = store.state_dir / DATABASE_NAME
    assert raw_query(db, "PRAGMA integrity_check") == [("ok",)]
    assert raw_query(db, "PRAGMA foreign_key_check") == []
    with StateStore(store.state_dir) as reopened:
        latest = reopened.latest_committed(RUN)
        report = reopened.verify_audit()
        assert latest is not None
        assert report.ok
        if point == "after-commit":  # committed, then killed: nothing committed is lost
            assert (latest.round, latest.version) == (2, hashlib.sha256(new_weights).hexdigest())
            assert latest.weights_bytes == new_weights
            assert report.entries == entries_before + 1
            return
        assert (latest.round, latest.version, latest.weights_bytes) == (
            1,
            v1,
            weights_to_bytes(weights(1.0)),
        )
        assert report.entries == entries_before
        assert reopened.blobs.has(model_version(weights(2.0)))  # put before the transaction
        assert reopened.rounds(RUN)[-1].state is RoundState.OPEN
        with pytest.raises(StoreError):
            reopened.lineage(model_version(weights(2.0)))
        # The restarted server runs round 2 again and commits it.
        reopened.open_round(RUN, 2)
        assert commit_existing(reopened, 2, v1) == model_version(weights(2.0))
        resumed = reopened.latest_committed(RUN)
        assert resumed is not None
        assert resumed.round == 2
    assert verify_chain(db).ok
