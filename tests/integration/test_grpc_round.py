"""Real rounds over gRPC on 127.0.0.1: clients pull, train, upload; the server aggregates.

The same app run through the simulation gives the same model, bit for bit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedhive.client.runner import serve
from fedhive.core.version import ModelVersion
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.app import AppSpec
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id
from grpc_loopback import loopback_server

TESTS = Path(__file__).resolve().parents[1]
CLIENTS = ["good-0", "good-1", "good-2", "raise-0", "nan-0", "shape-0"]


@pytest.fixture
def server() -> Iterator[GrpcServerTransport]:
    with loopback_server() as transport:
        yield transport


def start_clients(port: int, stop: threading.Event) -> list[threading.Thread]:
    app = AppSpec("fake_app:build", TESTS).build({"clients": CLIENTS}, 0)
    threads = []
    for client_id in CLIENTS:
        link = GrpcLink(f"127.0.0.1:{port}", client_id=client_id, credentials=None)
        thread = threading.Thread(
            target=serve, args=(link, app.client.client_fn(client_id)), kwargs={"stop": stop}
        )
        thread.start()
        threads.append(thread)
    return threads


def test_grpc_rounds_match_the_simulation_bit_for_bit(server: GrpcServerTransport) -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": CLIENTS}, 0)
    strategy = Algorithm(min_available_clients=6, fraction_evaluate=1.0)
    stop = threading.Event()
    threads = start_clients(server.port, stop)
    try:
        assert server.wait_for_clients(6, timeout=20)
        loop = RoundLoop(strategy=strategy, transport=server, seed=11, federated_every=1)
        networked = loop.run(app.server.initial_weights, 3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    simulated = run_simulation(app, strategy=strategy, rounds=3, seed=11, federated_every=1)
    assert networked.version == simulated.version
    for net, sim in zip(networked.history, simulated.history, strict=True):
        assert net.committed
        assert (net.fit.succeeded, net.fit.failed) == (3, 3)
        assert dict(net.fit.failures) == {
            "fit:client_error": 1,
            "verify:non_finite": 1,
            "verify:shape_mismatch": 1,
        }
        assert net.fit.failures == sim.fit.failures
        assert net.train == sim.train
        assert net.federated == sim.federated


def test_a_missing_client_fails_at_the_deadline_and_the_round_completes() -> None:
    transport = GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        round_timeout=1.5,
    )
    app = AppSpec("fake_app:build", TESTS).build({"clients": CLIENTS}, 0)
    stop = threading.Event()
    threads = start_clients(transport.port, stop)
    try:
        assert transport.wait_for_clients(6, timeout=20)
        stop.set()  # every client leaves; one ghost keeps "registered" status
        for thread in threads:
            thread.join(timeout=10)
        transport.coordinator.touch("ghost")
        loop = RoundLoop(strategy=Algorithm(), transport=transport, seed=1)
        state = Algorithm().initial_state(app.server.initial_weights)
        initial = ModelVersion.of(app.server.initial_weights)
        _, model, record = loop.run_round(state, 1, initial)
    finally:
        transport.close()
    assert not record.committed  # nobody answered: nothing to aggregate
    assert record.fit.failures["transport:deadline"] == record.fit.selected
    assert model is initial


def test_insecure_mode_refuses_a_non_loopback_address() -> None:
    from fedhive.errors import ConfigError

    with pytest.raises(ConfigError, match="binds only to loopback"):
        GrpcServerTransport(
            address="0.0.0.0:0", credentials=None, insecure=True, identify=trust_claimed_id
        )
    with pytest.raises(ConfigError, match="TLS credentials are required"):
        GrpcServerTransport(address="127.0.0.1:0", credentials=None, identify=trust_claimed_id)


def test_garbage_bytes_to_every_method_leave_the_server_serving(
    server: GrpcServerTransport,
) -> None:
    import grpc
    import numpy as np

    rng = np.random.default_rng(0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    codes = []
    try:
        for method in ("Register", "Heartbeat", "PullTask", "Status", "DownloadModel"):
            call = channel.unary_unary(f"/fedhive.v1.Fedhive/{method}")
            for _ in range(10):
                try:
                    call(rng.bytes(int(rng.integers(0, 200))), timeout=5)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
        upload = channel.stream_unary("/fedhive.v1.Fedhive/UploadResult")
        for _ in range(10):
            chunks = [rng.bytes(int(rng.integers(1, 300))) for _ in range(3)]
            try:
                upload(iter(chunks), timeout=5)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    finally:
        channel.close()
    assert codes  # junk was refused ...
    assert set(codes) <= {
        grpc.StatusCode.INVALID_ARGUMENT,  # ... as undecodable
        grpc.StatusCode.NOT_FOUND,  # or decodable but naming nothing that exists
        grpc.StatusCode.FAILED_PRECONDITION,  # or a wrong schema version
    }
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="after-junk", credentials=None)
    try:
        assert link.register() == server.coordinator.run_id
        status = link.status()
        assert status["run_id"] == server.coordinator.run_id
        assert status["connected_nodes"] == 1
    finally:
        link.close()


def test_over_selection_closes_the_round_at_its_quorum(server: GrpcServerTransport) -> None:
    clients = ["good-0", "good-1", "good-2", "slow-0"]
    app = AppSpec("fake_app:build", TESTS).build({"clients": clients}, 0)
    stop = threading.Event()
    threads = []
    for client_id in clients:
        link = GrpcLink(f"127.0.0.1:{server.port}", client_id=client_id, credentials=None)
        threads.append(
            threading.Thread(
                target=serve, args=(link, app.client.client_fn(client_id)), kwargs={"stop": stop}
            )
        )
        threads[-1].start()
    strategy = Algorithm(fraction_fit=0.75, over_selection=1 / 3, min_available_clients=4)
    try:
        assert server.wait_for_clients(4, timeout=20)
        loop = RoundLoop(strategy=strategy, transport=server, seed=2)
        record = loop.run(app.server.initial_weights, 1).history[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert record.fit.selected == 4  # 3 wanted, one more selected
    assert record.fit.succeeded == 3
    assert dict(record.fit.failures) == {"transport:round_closed": 1}
    assert "slow-0" not in record.fit.contributors


def test_a_replayed_result_is_refused_as_a_duplicate(server: GrpcServerTransport) -> None:
    from fedhive.core.messages import ClientConfig, FitTask
    from fedhive.core.serde import model_version
    from fedhive.transport.base import Wait

    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="good-0", credentials=None)
    try:
        link.register()
        task = FitTask(
            round=1,
            client_id="good-0",
            version=model_version(app.server.initial_weights),
            seed=0,
            config=ClientConfig(),
        )
        outcomes = server.fit([task], ModelVersion.of(app.server.initial_weights))
        envelope = link.pull()
        assert not isinstance(envelope, Wait)
        from fedhive.client.base import TaskOrigin
        from fedhive.client.pipeline import run_fit

        origin = TaskOrigin(run_id=envelope.run_id, task_id=envelope.task_id)
        client = app.client.client_fn("good-0")
        reply = run_fit(client, envelope.task, app.server.initial_weights, {}, origin=origin)
        assert link.upload(envelope, reply) == "accepted"
        assert link.upload(envelope, reply) == "duplicate"
        assert [type(o).__name__ for o in outcomes] == ["FitReply"]
    finally:
        link.close()


def answer_in_order(server: GrpcServerTransport, answers: dict[str, object]) -> None:
    """Act as the clients of ``answers``: take each one's task once all are published,
    then hand the outcomes to the round loop in the dict's order (a FitReply with the
    task's round and version for "honest", or as built by the callable)."""
    import time

    from fedhive.core.messages import FitTask

    deadline = time.monotonic() + 20
    envelopes = {}
    while len(envelopes) < len(answers) and time.monotonic() < deadline:
        for client_id in answers:
            if client_id not in envelopes:
                envelope = server.coordinator.pull(client_id)
                if envelope is not None:
                    envelopes[client_id] = envelope
        time.sleep(0.01)
    claimed = {cid: server.coordinator.claim(e.task_id, cid)[1] for cid, e in envelopes.items()}
    for client_id, build in answers.items():
        task = envelopes[client_id].task
        assert isinstance(task, FitTask)
        server.coordinator.deliver(claimed[client_id], build(task))  # type: ignore[operator]


def test_uploads_that_fail_verification_do_not_count_toward_the_quorum(
    server: GrpcServerTransport,
) -> None:
    import numpy as np

    from fedhive.core.messages import EvaluateReply, FitReply, FitTask
    from fedhive.core.weights import Weights

    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)

    def honest(task: FitTask) -> FitReply:
        update = Weights({k: v + np.float32(1) for k, v in app.server.initial_weights.items()})
        return FitReply(
            client_id=task.client_id,
            round=task.round,
            version=task.version,
            update=update,
            num_examples=1,
        )

    def wrong_shape(task: FitTask) -> FitReply:
        update = Weights({"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)})
        return FitReply(
            client_id=task.client_id,
            round=task.round,
            version=task.version,
            update=update,
            num_examples=1,
        )

    def wrong_kind(task: FitTask) -> EvaluateReply:
        return EvaluateReply(client_id=task.client_id, round=task.round, loss=0.0, num_examples=1)

    # The two cheaters answer first; the honest client last. 3 selected, quorum 2.
    answers = {"cheat-0": wrong_kind, "cheat-1": wrong_shape, "honest-0": honest}
    for client_id in answers:
        server.coordinator.touch(client_id)
    strategy = Algorithm(fraction_fit=2 / 3, over_selection=0.5, min_available_clients=3)
    helper = threading.Thread(target=answer_in_order, args=(server, answers))
    helper.start()
    try:
        record = (
            RoundLoop(strategy=strategy, transport=server, seed=0)
            .run(app.server.initial_weights, 1)
            .history[0]
        )
    finally:
        helper.join(timeout=30)
    assert record.fit.selected == 3
    assert record.committed, record.note
    assert record.fit.contributors == ["honest-0"]
    assert dict(record.fit.failures) == {
        "verify:shape_mismatch": 1,
        "verify:validation": 1,  # an evaluation answering a fit task is not dropped
    }


def test_a_published_cohort_serves_the_loops_bytes_without_encoding_them_again(
    server: GrpcServerTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fit and federated evaluation publish the version's own bytes: the client downloads
    exactly ``model.data``, and the transport serialises nothing."""
    from fedhive.core import serde
    from fedhive.core.messages import ClientConfig, EvaluateTask, FitTask
    from fedhive.transport.base import Wait

    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    model = ModelVersion.of(app.server.initial_weights)
    encoded: list[str] = []
    encode = serde._encode
    monkeypatch.setattr(serde, "_encode", lambda *a: encoded.append("x") or encode(*a))
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="good-0", credentials=None)
    try:
        link.register()
        for kind in (FitTask, EvaluateTask):
            task = kind(
                round=1, client_id="good-0", version=model.digest, seed=0, config=ClientConfig()
            )
            publish = server.fit if kind is FitTask else server.evaluate
            publish([task], model)  # type: ignore[operator]
            envelope = link.pull()
            assert not isinstance(envelope, Wait)
            assert link.download(envelope) == model.data
    finally:
        link.close()
    assert encoded == []
