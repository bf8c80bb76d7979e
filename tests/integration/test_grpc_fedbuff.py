"""FedBuff over real gRPC on 127.0.0.1: each task trains on the version its client
fetched, a version commits every ``buffer_size`` results, and a task's deadline is the
round timeout. The interleavings that matter are fixed by the gates of ``gated_app``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

import gated_app
from fedhive.client.base import Client, TaskOrigin
from fedhive.client.pipeline import run_fit
from fedhive.client.runner import serve
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import ClientConfig, Failure, FitReply, FitTask
from fedhive.core.serde import model_version, weights_from_bytes
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.errors import TransportError
from fedhive.server.asynchronous import AsyncLoop
from fedhive.simulation.app import AppContext, AppSpec
from fedhive.strategy import fedbuff
from fedhive.transport.base import Finished, Wait
from fedhive.transport.codec import TaskEnvelope
from fedhive.transport.grpc.asynchronous import GrpcAsyncRunner
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id

TESTS = Path(__file__).resolve().parents[1]


def _origin(envelope: TaskEnvelope) -> TaskOrigin:
    return TaskOrigin(run_id=envelope.run_id, task_id=envelope.task_id)


def local_server(round_timeout: float) -> GrpcServerTransport:
    return GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        round_timeout=round_timeout,
    )


def start_clients(
    port: int, clients: Mapping[str, Client], stop: threading.Event
) -> list[threading.Thread]:
    threads = []
    for client_id, client in clients.items():
        link = GrpcLink(f"127.0.0.1:{port}", client_id=client_id, credentials=None)
        thread = threading.Thread(target=serve, args=(link, client), kwargs={"stop": stop})
        thread.start()
        threads.append(thread)
    return threads


class Watching:
    """The gRPC runner, checked on every call: no client holds two tasks at once, and
    the server publishes only the models of tasks in flight."""

    def __init__(
        self, transport: GrpcServerTransport, on_submit: Callable[[FitTask], None] | None = None
    ) -> None:
        self.runner = GrpcAsyncRunner(transport)
        self.coordinator = transport.coordinator
        self.on_submit = on_submit
        self.in_flight: dict[int, FitTask] = {}
        self.tasks: Counter[str] = Counter()
        self.most_versions = 0

    def client_ids(self) -> Sequence[str]:
        return self.runner.client_ids()

    def submit(self, dispatch: int, task: FitTask, model: ModelVersion) -> None:
        busy = {t.client_id for t in self.in_flight.values()}
        assert task.client_id not in busy, f"{task.client_id} was given two tasks at once"
        self.runner.submit(dispatch, task, model)
        self.in_flight[dispatch] = task
        self.tasks[task.client_id] += 1
        self.check()
        if self.on_submit is not None:
            self.on_submit(task)

    def next_finished(self) -> Sequence[Finished]:
        finished = self.runner.next_finished()
        for ended in finished:
            del self.in_flight[ended.dispatch]
        self.check()
        return finished

    def close(self) -> None:
        self.runner.close()

    def check(self) -> None:
        held = set(self.coordinator.versions())
        assert held <= {task.version for task in self.in_flight.values()}
        self.most_versions = max(self.most_versions, len(held))


def test_a_stale_update_is_taken_while_fast_clients_keep_training(tmp_path: Path) -> None:
    ctx = AppContext(params={"gates": str(tmp_path)}, seed=0, base_dir=TESTS)
    app = gated_app.build(ctx)
    transport = local_server(round_timeout=30.0)
    stop = threading.Event()
    clients = {cid: app.client.client_fn(cid) for cid in app.client_ids}
    threads = start_clients(transport.port, clients, stop)
    runner = Watching(transport)
    strategy = fedbuff(min_available_clients=4, buffer_size=2, concurrency=4)
    try:
        assert transport.wait_for_clients(4, timeout=20)
        loop = AsyncLoop(
            strategy=strategy, runner=runner, seed=5, evaluate_fn=app.server.evaluate_fn
        )
        result = loop.run(app.server.initial_weights, 8)
    finally:
        runner.close()
        gated_app.open_gates(tmp_path)
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
        transport.close()
    history = result.history
    assert [(r.round, r.committed) for r in history] == [(v, True) for v in range(1, 9)]
    assert np.all(result.weights["w"] == 8.0)  # every update moves by 1; lr 1
    late = next(i for i, r in enumerate(history) if "late" in r.fit.contributors)
    assert history[late].train["staleness_max"] >= gated_app.HOLD_FROM
    # While late trained its first task, 3 fast clients gave at least 4 updates.
    assert sum(len(r.fit.contributors) for r in history[:late]) >= 4
    assert all(runner.tasks[f"fast-{i}"] > 1 for i in range(3))
    assert runner.most_versions >= 2  # late's model stayed published beside newer ones
    assert transport.coordinator.versions() == []  # closing withdrew the rest


def test_a_vanished_client_fails_at_its_deadline_and_the_run_completes() -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0", "good-1"]}, 0)
    transport = local_server(round_timeout=1.0)
    ghost = GrpcLink(f"127.0.0.1:{transport.port}", client_id="ghost", credentials=None)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    taken: list[TaskEnvelope] = []

    def vanish_then_let_the_others_in(task: FitTask) -> None:
        """The ghost, alone at first, fetches its task and model, and is never heard of
        again; only then do the good clients join."""
        if taken:
            return
        envelope = ghost.pull()
        assert not isinstance(envelope, Wait)
        ghost.download(envelope)
        taken.append(envelope)
        clients = {cid: app.client.client_fn(cid) for cid in app.client_ids}
        threads.extend(start_clients(transport.port, clients, stop))
        assert transport.wait_for_clients(3, timeout=20)

    runner = Watching(transport, on_submit=vanish_then_let_the_others_in)
    strategy = fedbuff(buffer_size=2, concurrency=3)
    try:
        ghost.register()
        result = AsyncLoop(strategy=strategy, runner=runner, seed=1).run(
            app.server.initial_weights, 3
        )
        late = Failure(
            client_id="ghost", round=0, stage=Stage.FIT, kind=FailureKind.CLIENT_ERROR, message=""
        )
        verdict = ghost.upload(taken[0], late)
    finally:
        runner.close()
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
        ghost.close()
        transport.close()
    first = result.history[0]
    assert first.fit.failures["transport:deadline"] >= 1
    assert all(r.committed for r in result.history)
    assert len(result.history) == 3
    assert not any("ghost" in r.fit.contributors for r in result.history)
    assert verdict == "round_closed"


def test_tasks_on_two_versions_end_by_upload_or_deadline() -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0", "good-1"]}, 0)
    v0 = app.server.initial_weights
    v1 = Weights({name: value + np.float32(1) for name, value in v0.items()})
    transport = local_server(round_timeout=2.0)
    runner = GrpcAsyncRunner(transport)
    links = {
        c: GrpcLink(f"127.0.0.1:{transport.port}", client_id=c, credentials=None)
        for c in app.client_ids
    }
    coordinator = transport.coordinator
    try:
        assert runner.next_finished() == []  # nothing in flight
        for link in links.values():
            link.register()
        first = FitTask(
            round=0, client_id="good-0", version=model_version(v0), seed=0, config=ClientConfig()
        )
        second = FitTask(
            round=1, client_id="good-1", version=model_version(v1), seed=1, config=ClientConfig()
        )
        runner.submit(7, first, ModelVersion.of(v0))
        runner.submit(8, second, ModelVersion.of(v1))
        assert coordinator.versions() == sorted([first.version, second.version])
        envelopes = {}
        for cid, link in links.items():
            envelope = link.pull()
            assert not isinstance(envelope, Wait)
            envelopes[cid] = envelope
        model = weights_from_bytes(links["good-0"].download(envelopes["good-0"]))
        reply = run_fit(
            app.client.client_fn("good-0"), first, model, {}, origin=_origin(envelopes["good-0"])
        )
        assert links["good-0"].upload(envelopes["good-0"], reply) == "accepted"
        [answered] = runner.next_finished()
        assert answered.dispatch == 7
        assert isinstance(answered.outcome, FitReply)
        assert coordinator.versions() == [second.version]  # v0 is no task's any more
        [expired] = runner.next_finished()  # good-1 never answers
        assert expired.dispatch == 8
        assert expired.clock > answered.clock
        assert isinstance(expired.outcome, Failure)
        outcome = expired.outcome
        assert (outcome.stage, outcome.kind) == ("transport", "deadline")
        assert coordinator.versions() == []
        with pytest.raises(TransportError, match="NOT_FOUND"):
            links["good-1"].download(envelopes["good-1"])
        late = run_fit(
            app.client.client_fn("good-1"), second, v1, {}, origin=_origin(envelopes["good-1"])
        )
        assert links["good-1"].upload(envelopes["good-1"], late) == "round_closed"
        assert runner.next_finished() == []
        runner.submit(9, first, ModelVersion.of(v0))
        runner.close()  # withdraws it
        assert coordinator.versions() == []
        assert links["good-0"].pull() == Wait(0.2)
    finally:
        runner.close()
        for link in links.values():
            link.close()
        transport.close()


def test_a_task_whose_upload_was_refused_ends_with_the_refusal_at_its_deadline() -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    transport = local_server(round_timeout=0.5)
    runner = GrpcAsyncRunner(transport)
    try:
        task = FitTask(
            round=0,
            client_id="good-0",
            version=model_version(app.server.initial_weights),
            seed=0,
            config=ClientConfig(),
        )
        runner.submit(3, task, ModelVersion.of(app.server.initial_weights))
        envelope = transport.coordinator.pull("good-0")
        assert envelope is not None
        refused = Failure(
            client_id="good-0", round=0, stage=Stage.UPLOAD, kind=FailureKind.SIGNATURE, message="x"
        )
        transport.coordinator.refuse(envelope.task_id, refused)  # as the servicer does
        [finished] = runner.next_finished()
        assert (finished.dispatch, finished.outcome) == (3, refused)
    finally:
        runner.close()
        transport.close()
