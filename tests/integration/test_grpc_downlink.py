"""The model's downlink over real gRPC on 127.0.0.1: deltas under mutual TLS, and the
download bytes the server counts against those its clients' streams carried.

Three rounds of two clients on a 10,000-parameter float32 model. With
``Downlink(delta=True)`` the first round streams the whole model and the next ones the
delta against the client's last model (smaller, and rebuilt exactly: the signed model
check passes and the run ends on the weights a full-model run ends on).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from fedhive.client.runner import serve
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.serde import model_version, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.pki.provision import provision
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.run import RunResult
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.codec import TaskEnvelope
from fedhive.transport.downlink import Downlink, Download
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport
from grpc_loopback import loopback_server
from grpc_mtls import mtls_link, mtls_server

SIZE = 10_000
MODEL = Weights({"w": np.random.default_rng(0).normal(size=SIZE).astype(np.float32)})
MODEL_BYTES = len(weights_to_bytes(MODEL))
CLIENTS = ["client-0000", "client-0001"]


class Step:
    """A client whose update is a small fixed step, different per client."""

    def __init__(self, index: int) -> None:
        self.index = index

    def fit(self, weights: Weights, config: ClientConfig, context: object) -> FitResult:
        step = np.random.default_rng(self.index).normal(size=SIZE).astype(np.float32) * 1e-3
        return FitResult(delta=Weights({"w": step}), num_examples=10)

    def evaluate(self, weights: Weights, config: ClientConfig, context: object) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


class CountingLink(GrpcLink):
    """A client's link noting, per round, the data bytes its download stream carried."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.streamed: dict[int, int] = {}

    def download(self, envelope: TaskEnvelope) -> bytes:
        data = super().download(envelope)
        self.streamed[envelope.task.round] = self.last_download_bytes
        return data


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    provision(root, clients=CLIENTS)
    return root


def server_of(pki: Path, downlink: Downlink) -> GrpcServerTransport:
    return mtls_server(pki / "server", downlink=downlink)


def link_of(server: GrpcServerTransport, pki: Path, client_id: str) -> CountingLink:
    return mtls_link(server, pki / "clients" / client_id, client_id, CountingLink)


def run(server: GrpcServerTransport, links: list[CountingLink], rounds: int) -> RunResult:
    stop = threading.Event()
    threads = [
        threading.Thread(target=serve, args=(link, Step(i)), kwargs={"stop": stop})
        for i, link in enumerate(links)
    ]
    for thread in threads:
        thread.start()
    try:
        assert server.wait_for_clients(len(links), timeout=20)
        strategy = Algorithm(min_available_clients=len(links))
        return RoundLoop(strategy=strategy, transport=server, seed=5).run(MODEL, rounds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def runs(pki: Path) -> dict[str, tuple[RunResult, list[CountingLink]]]:
    out = {}
    for name, delta in (("full", False), ("delta", True)):
        server = server_of(pki, Downlink(delta=delta))
        try:
            links = [link_of(server, pki, cid) for cid in CLIENTS]
            out[name] = (run(server, links, 3), links)
        finally:
            server.close()
    return out


def test_the_server_counts_the_bytes_each_clients_stream_carried(
    runs: dict[str, tuple[RunResult, list[CountingLink]]],
) -> None:
    for result, links in runs.values():
        assert [r.fit.succeeded for r in result.history] == [2, 2, 2]
        for record in result.history:
            counted = {cid: t.bytes_down for cid, t in record.fit.traffic.items()}
            assert counted == {link.client_id: link.streamed[record.round] for link in links}
            assert record.fit.bytes_down == sum(counted.values())


def test_after_the_first_round_a_client_downloads_the_smaller_delta(
    runs: dict[str, tuple[RunResult, list[CountingLink]]],
) -> None:
    full, delta = runs["full"][0].history, runs["delta"][0].history
    assert [r.fit.bytes_down for r in full] == [2 * MODEL_BYTES] * 3
    assert delta[0].fit.bytes_down == 2 * MODEL_BYTES
    for record in delta[1:]:
        assert 0 < record.fit.bytes_down < 0.9 * 2 * MODEL_BYTES


def test_deltas_change_nothing_the_clients_train_on(
    runs: dict[str, tuple[RunResult, list[CountingLink]]],
) -> None:
    full, delta = runs["full"][0].weights, runs["delta"][0].weights
    assert weights_to_bytes(full) == weights_to_bytes(delta)


def test_an_insecure_server_counts_downloads_by_the_requests_client_id() -> None:
    """Before ModelRequest named its client, an insecure server measured no download
    (``downloaded`` was None, and the round counted the published size instead)."""
    with loopback_server() as server:
        links = [
            CountingLink(f"127.0.0.1:{server.port}", client_id=c, credentials=None) for c in CLIENTS
        ]
        run(server, links, 1)
        sent = {link.client_id: link.streamed[1] for link in links}
        assert sent == dict.fromkeys(CLIENTS, MODEL_BYTES)
        assert {c: server.downloaded(c, model_version(MODEL)) for c in CLIENTS} == sent


class GarblingDownlink(Downlink):
    """A server bug (or a base the client no longer matches): every delta is garbage."""

    def download(self, version: str, model: bytes, base: str) -> Download:
        sent = super().download(version, model, base)
        return Download(b"FHDL" + bytes(60), delta=True) if sent.delta else sent


def test_a_delta_that_does_not_rebuild_the_model_falls_back_to_the_whole_model(
    pki: Path,
) -> None:
    server = server_of(pki, GarblingDownlink(delta=True))
    try:
        links = [link_of(server, pki, cid) for cid in CLIENTS]
        result = run(server, links, 2)
    finally:
        server.close()
    assert [r.fit.succeeded for r in result.history] == [2, 2]
    # round 2: the garbage delta, then the whole model
    assert [link.streamed[2] for link in links] == [64 + MODEL_BYTES] * 2
    assert weights_to_bytes(result.weights) == weights_to_bytes(runs_weights(pki, 2))


def runs_weights(pki: Path, rounds: int) -> Weights:
    server = server_of(pki, Downlink(delta=False))
    try:
        return run(server, [link_of(server, pki, cid) for cid in CLIENTS], rounds).weights
    finally:
        server.close()
