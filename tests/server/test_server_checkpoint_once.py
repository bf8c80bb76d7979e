"""A checkpointed round makes its new model's bytes and digest once: the loop's
ModelVersion, handed to the transport, the record and the store's commit."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_server_checkpoint import open_checkpoint

from fedhive.server.orchestrator import RoundLoop, RunResult
from fedhive.server.store import StateStore
from fedhive.simulation.backends.local import LocalBackend
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.inprocess import InProcessTransport
from lstsq_app import build

ROUNDS = 3


def run_checkpointed(store: StateStore, rounds: int, *, opened: Any = None) -> RunResult:
    """``rounds`` rounds of FedAvg with federated evaluation, committed to ``store``;
    ``opened`` runs once the run's initial model is committed."""
    app = build(4)
    checkpoint = open_checkpoint(store)
    if opened is not None:
        opened()
    loop = RoundLoop(
        strategy=Algorithm(fraction_evaluate=1.0),
        transport=InProcessTransport(
            client_ids=app.client_ids, runner=LocalBackend(app.client.client_fn)
        ),
        seed=0,
        checkpoint=checkpoint,
        federated_every=1,
    )
    return loop.run(app.server.initial_weights, rounds)


def test_a_checkpointed_round_serialises_its_new_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ModelVersion per model: the tasks' version, federated evaluation, the record
    and the store's commit all share one serialisation (it used to be three a round)."""
    from fedhive.core import serde

    encoded: list[int] = []
    encode = serde._encode

    def counting(arrays: Any, meta: dict[str, Any]) -> bytes:
        if meta.get("format") == "weights/1":
            encoded.append(len(arrays))
        return encode(arrays, meta)

    monkeypatch.setattr(serde, "_encode", counting)
    with StateStore(tmp_path) as store:
        result = run_checkpointed(store, ROUNDS, opened=encoded.clear)  # not the initial's
    assert all(record.committed for record in result.history)
    assert len(encoded) == 1 + ROUNDS  # the run's start, then one per new model


def test_a_checkpointed_round_hashes_its_new_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store files the model under the digest the loop's ModelVersion made, instead
    of hashing the bytes again (it used to hash every committed model twice)."""
    sha256 = hashlib.sha256
    hashed: list[bytes] = []

    def counting(data: bytes = b"", **kwargs: Any) -> Any:
        hashed.append(bytes(data))
        return sha256(data, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", counting)
    with StateStore(tmp_path) as store:
        result = run_checkpointed(store, ROUNDS, opened=hashed.clear)  # not the initial's
        versions = [record.version for record in result.history]
        assert all(record.committed for record in result.history)
        assert all(store.blobs.has(v) for v in versions)
        assert len(set(versions)) == ROUNDS
    model_hashes = Counter(
        digest for digest in (sha256(data).hexdigest() for data in hashed) if digest in versions
    )
    assert model_hashes == dict.fromkeys(versions, 1)
