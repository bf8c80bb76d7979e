"""Contract tests run against every simulation backend (local and process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedhive.config.simulated import StartMethod
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.app import AppSpec
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.backends.process import ProcessBackend
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.base import CohortRunner
from fedhive.transport.inprocess import InProcessTransport

TESTS = Path(__file__).resolve().parents[1]
SPEC = AppSpec("fake_app:build", TESTS)
FAULTY = ["good-0", "good-1", "good-2", "shape-0", "nan-0", "dtype-0", "raise-0"]


def make_runner(kind: str, clients: list[str]) -> CohortRunner:
    app = SPEC.build({"clients": clients}, 0)
    if kind == "local":
        return LocalBackend(app.client.client_fn)
    if kind == "fork":
        return ProcessBackend(app=app, workers=2)
    return ProcessBackend(
        spec=SPEC, params={"clients": clients}, workers=2, start_method=StartMethod.SPAWN
    )


@pytest.fixture(params=["local", "fork", "spawn"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(kind: str, clients: list[str], rounds: int, federated_every: int = 0) -> RoundLoop:
    app = SPEC.build({"clients": clients}, 0)
    transport = InProcessTransport(client_ids=clients, runner=make_runner(kind, clients))
    return RoundLoop(
        strategy=Algorithm(fraction_evaluate=1.0),
        transport=transport,
        seed=3,
        evaluate_fn=app.server.evaluate_fn,
        federated_every=federated_every,
    ), app


def test_faulty_clients_are_counted_and_the_round_completes(backend: str) -> None:
    loop, app = run(backend, FAULTY, rounds=1)
    try:
        result = loop.run(app.server.initial_weights, 1)
    finally:
        loop.transport.close()
    record = result.history[0]
    assert record.committed
    assert (record.fit.selected, record.fit.succeeded, record.fit.failed) == (7, 3, 4)
    assert dict(record.fit.failures) == {
        "verify:shape_mismatch": 1,
        "verify:non_finite": 1,
        "fit:dtype_mismatch": 1,
        "fit:client_error": 1,
    }
    # good-i moves by i+1 with weight i+1: (1*1 + 2*2 + 3*3) / 6 = 14/6
    np.testing.assert_allclose(result.weights["w"], np.full((2, 3), 14 / 6, np.float32))


def test_state_persists_between_rounds_and_evaluation_runs(backend: str) -> None:
    loop, app = run(backend, ["good-0", "good-1"], rounds=3, federated_every=1)
    try:
        result = loop.run(app.server.initial_weights, 3)
    finally:
        loop.transport.close()
    assert [r.train["calls"] for r in result.history] == [1.0, 2.0, 3.0]
    assert all(r.federated["accuracy"] == 0.5 for r in result.history)
    assert all(r.evaluate.succeeded == 2 for r in result.history)


def test_backends_agree_bit_for_bit() -> None:
    versions = {}
    for kind in ("local", "fork", "spawn"):
        loop, app = run(kind, ["good-0", "good-1", "good-2", "good-3"], rounds=2)
        try:
            result = loop.run(app.server.initial_weights, 2)
        finally:
            loop.transport.close()
        versions[kind] = (result.version, [r.train["rng"] for r in result.history])
    assert versions["local"] == versions["fork"] == versions["spawn"]


@pytest.mark.parametrize("kind", ["fork", "spawn"])
def test_a_crashed_worker_fails_its_tasks_and_is_replaced(kind: str) -> None:
    clients = ["good-0", "crash-0", "good-1"]
    loop, app = run(kind, clients, rounds=2)
    try:
        result = loop.run(app.server.initial_weights, 2)
    finally:
        loop.transport.close()
    for record in result.history:
        assert record.committed
        assert record.fit.failures["transport:transport"] >= 1
        assert record.fit.succeeded >= 1


def test_the_process_backend_sends_each_model_version_without_encoding_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two workers, fit and federated evaluation each round: the workers get the bytes
    the loop's ModelVersion made, one model frame per version (it used to encode the
    model again for every cohort)."""
    from fedhive.core import serde
    from fedhive.simulation.backends import process

    encoded: list[int] = []
    encode = serde._encode

    def counting(arrays: Any, meta: dict[str, Any]) -> bytes:
        if meta.get("format") == "weights/1":
            encoded.append(len(arrays))  # in the driver only: a worker's count is its own
        return encode(arrays, meta)

    model_frames: list[str] = []
    frame = process.encode_frame

    def watching(header: dict[str, Any], blobs: list[bytes] | None = None) -> bytes:
        if header.get("type") == "model":
            model_frames.append(header["version"])
        return frame(header, blobs)

    monkeypatch.setattr(serde, "_encode", counting)
    monkeypatch.setattr(process, "encode_frame", watching)
    rounds = 3
    loop, app = run("fork", ["good-0", "good-1", "good-2", "good-3"], rounds, federated_every=1)
    try:
        result = loop.run(app.server.initial_weights, rounds)
    finally:
        loop.transport.close()
    assert all(r.evaluate.succeeded == 4 for r in result.history)
    assert len(encoded) == 1 + rounds  # the loop's: the initial model, then one per round
    assert model_frames[1:] == [r.version for r in result.history]  # each new one, once
    assert len(set(model_frames)) == len(model_frames) == 1 + rounds
