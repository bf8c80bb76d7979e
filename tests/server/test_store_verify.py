"""``verify_state``: truncation, rewriting and unsigned additions are caught with the
server's certificate (the signed heads and ``audit-head.json``), and the rounds and
versions tables are checked against the entries that record them."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from cryptography.x509 import Certificate

from fedhive.core.serde import sha256_hex, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.pki.identity import load_certificate
from fedhive.pki.provision import provision
from fedhive.server.store import DATABASE_NAME, StateStore
from fedhive.server.store.anchor import HEAD_FILE, HeadSigner
from fedhive.server.store.audit import entry_hash, format_time
from fedhive.server.store.verify import verify_state

RUN = "run-1"


@pytest.fixture(scope="module")
def server_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    provision(root, clients=["client-0000"])
    return root / "server"


@pytest.fixture
def certificate(server_certs: Path) -> Certificate:
    return load_certificate((server_certs / "cert.pem").read_bytes())


@pytest.fixture
def state(tmp_path: Path, server_certs: Path) -> Path:
    """A run of three committed rounds, its heads signed by the server's key."""
    signer = HeadSigner.from_pem((server_certs / "key.pem").read_bytes())
    with StateStore(tmp_path / "state", signer=signer) as store:
        store.create_run(RUN, seed=0, config={})
        store.record_start(RUN)
        parent = None
        for rnd in range(4):
            store.open_round(RUN, rnd)
            model = weights_to_bytes(Weights({"w": np.full(3, rnd, np.float32)}))
            parent = store.commit_round(
                RUN,
                rnd,
                weights_bytes=model,
                version=sha256_hex(model),
                parent_version=parent,
                strategy_state=b"s",
                strategy="fedavg",
                contributors=[f"c{rnd}", "c9"] if rnd else [],
                metrics={},
            )
    return tmp_path / "state"


@pytest.fixture
def aborted(state: Path, server_certs: Path) -> Path:
    """The same run, then a round 4 that was aborted with a strategy state of its own."""
    signer = HeadSigner.from_pem((server_certs / "key.pem").read_bytes())
    with StateStore(state, signer=signer) as store:
        store.open_round(RUN, 4)
        store.abort_round(RUN, 4, reason="too few clients", strategy_state=b"round 4 spent")
    return state


def sql(state: Path, *statements: str) -> None:
    with closing(sqlite3.connect(state / DATABASE_NAME)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()


def rechain(state: Path, edit: dict[str, object], seq: int) -> None:
    """Rewrite entry ``seq``'s payload with ``edit`` and re-chain every entry after it,
    as someone who can write the file (but has no key) would."""
    with closing(sqlite3.connect(state / DATABASE_NAME)) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        rows = conn.execute("SELECT seq, at, kind, payload, prev_hash FROM audit ORDER BY seq")
        prev = None
        for number, at, kind, payload, prev_hash in rows.fetchall():
            data = json.loads(payload)
            if number == seq:
                data.update(edit)
            prev = prev_hash if prev is None else prev
            digest = entry_hash(prev_hash=prev, seq=number, at=at, kind=kind, payload=data)
            conn.execute(
                "UPDATE audit SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (json.dumps(data, sort_keys=True, separators=(",", ":")), prev, digest, number),
            )
            prev = digest
        conn.commit()


def test_an_intact_signed_state_verifies_with_the_server_certificate(
    state: Path, certificate: Certificate
) -> None:
    report = verify_state(state, certificate=certificate)
    assert report.ok, report.reason
    head = json.loads((state / HEAD_FILE).read_text())
    assert (head["seq"], head["hash"]) == (report.entries, report.head)


def test_a_truncated_log_fails_against_its_head_file(state: Path, certificate: Certificate) -> None:
    last = verify_state(state).entries
    sql(
        state,
        "DROP TRIGGER audit_no_delete",
        "DROP TRIGGER audit_heads_no_delete",
        f"DELETE FROM audit_heads WHERE seq > {last - 2}",
        f"DELETE FROM audit WHERE seq > {last - 2}",
        # ... and every trace of round 3, so that the tables agree with the cut log
        "DELETE FROM strategy_state WHERE round = 3",
        "DELETE FROM rounds WHERE round = 3",
        "DELETE FROM model_versions WHERE round = 3",
    )
    assert verify_state(state).reason == (
        f"the log ends at entry {last - 2}, the head file names {last} (truncated)"
    )
    assert not verify_state(state, certificate=certificate).ok


def test_a_rewritten_and_rechained_history_fails_with_the_certificate(
    state: Path, certificate: Certificate
) -> None:
    (seq,) = [
        s
        for (s, p) in _entries(state)
        if json.loads(p).get("round") == 2 and "contributors" in json.loads(p)
    ]
    rechain(state, {"contributors": ["c9"]}, seq)
    sql(state, "UPDATE model_versions SET contributors = '[\"c9\"]' WHERE round = 2")
    assert verify_state(state, certificate=certificate).reason == (
        f"entry {seq} differs from its signed head (history rewritten)"
    )


def test_entries_added_without_the_key_are_not_covered(
    state: Path, certificate: Certificate
) -> None:
    head = verify_state(state)
    at = format_time(2e9)
    payload = {"note": "forged"}
    digest = entry_hash(
        prev_hash=head.head, seq=head.entries + 1, at=at, kind="operator", payload=payload
    )
    sql(
        state,
        "INSERT INTO audit (seq, at, kind, payload, prev_hash, hash) VALUES "
        f"({head.entries + 1}, '{at}', 'operator', '{json.dumps(payload)}', "
        f"'{head.head}', '{digest}')",
    )
    n = head.entries + 1
    assert verify_state(state, certificate=certificate).reason == (
        f"entries {n}..{n} are not covered by a signed head"
    )


def test_a_committed_round_with_no_audit_entry_fails_the_cross_check(state: Path) -> None:
    # The audit's PoC: cut the log's newest entries, keep the rounds "committed".
    (head_file := state / HEAD_FILE).unlink()
    last = verify_state(state).entries
    sql(
        state,
        "DROP TRIGGER audit_no_delete",
        "DROP TRIGGER audit_heads_no_delete",
        f"DELETE FROM audit_heads WHERE seq > {last - 2}",
        f"DELETE FROM audit WHERE seq > {last - 2}",
    )
    assert not head_file.exists()
    assert verify_state(state).reason == "round 3 of run run-1 is committed with no audit entry"


def test_a_round_rewritten_in_its_table_alone_fails_the_cross_check(state: Path) -> None:
    sql(state, "UPDATE model_versions SET contributors = '[\"c9\"]' WHERE round = 2")
    assert verify_state(state).reason.startswith("model version ")


def _entries(state: Path) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(state / DATABASE_NAME)) as conn:
        return [(int(s), str(p)) for s, p in conn.execute("SELECT seq, payload FROM audit")]


def test_a_state_with_an_aborted_round_verifies_with_the_server_certificate(
    aborted: Path, certificate: Certificate
) -> None:
    report = verify_state(aborted, certificate=certificate)
    assert report.ok, report.reason


def test_an_aborted_rounds_state_swapped_in_its_table_alone_fails_the_cross_check(
    aborted: Path,
) -> None:
    # Pointing round 4 at round 3's state would drop round 4's privacy event on resume.
    sql(
        aborted,
        "UPDATE strategy_state SET state_digest ="
        " (SELECT state_digest FROM strategy_state WHERE round = 3) WHERE round = 4",
    )
    assert verify_state(aborted).reason == "round 4 of run run-1 differs from its audit entry"


def test_an_aborted_round_reopened_in_its_table_fails_the_cross_check(aborted: Path) -> None:
    # A restart would run round 4 again, and its first attempt would go unaccounted.
    sql(aborted, "UPDATE rounds SET state = 'open', closed_at = NULL WHERE round = 4")
    assert verify_state(aborted).reason == (
        "round 4 of run run-1 has a strategy state but is not closed"
    )
    sql(aborted, "DELETE FROM strategy_state WHERE round = 4")
    assert verify_state(aborted).reason == (
        "audit entry aborted round 4 of run run-1: the rounds table lost it"
    )


@pytest.fixture
def accounted(state: Path, server_certs: Path) -> Path:
    """The same run, then a round 4 left open after it accounted a release (twice: a
    restart re-ran it)."""
    signer = HeadSigner.from_pem((server_certs / "key.pem").read_bytes())
    with StateStore(state, signer=signer) as store:
        store.open_round(RUN, 4)
        store.account_round(RUN, 4, strategy_state=b"round 4 released once")
        store.open_round(RUN, 4)
        store.account_round(RUN, 4, strategy_state=b"round 4 released twice")
    return state


def test_an_open_round_that_accounted_a_release_verifies_with_the_server_certificate(
    accounted: Path, certificate: Certificate
) -> None:
    report = verify_state(accounted, certificate=certificate)
    assert report.ok, report.reason
    with closing(sqlite3.connect(accounted / DATABASE_NAME)) as conn:
        kinds = [str(k) for (k,) in conn.execute("SELECT kind FROM audit ORDER BY seq")]
    assert kinds[-4:] == [
        "round_opened",
        "round_accounted",
        "round_reopened",
        "round_accounted",
    ]


def test_an_accounted_state_dropped_or_swapped_in_its_table_fails_the_cross_check(
    accounted: Path,
) -> None:
    # A restart would re-run round 4 from round 3's state: its releases uncounted.
    sql(accounted, "UPDATE rounds SET accounted_state = NULL WHERE round = 4")
    assert verify_state(accounted).reason == (
        "round 4 of run run-1: its accounted state differs from its audit entry"
    )
    sql(accounted, f"UPDATE rounds SET accounted_state = '{'0' * 64}' WHERE round = 4")
    assert verify_state(accounted).reason == (
        "round 4 of run run-1: its accounted state differs from its audit entry"
    )
