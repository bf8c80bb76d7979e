"""Compressed updates over real gRPC on 127.0.0.1: measured uplink bytes, and a bad payload.

Clients pull, train a 10,000-parameter float32 model, compress with the task's
``Compression`` and upload the payload in chunks; the server counts the chunks' bytes,
decodes with the published layout and verifies. An 8-bit round sends about a quarter
of the plain bytes; a client whose payload does not decode fails alone (``verify:codec``).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from fedhive.client.runner import serve
from fedhive.compression import Pipeline, StochasticQuantization
from fedhive.core.extensions import Compression
from fedhive.core.messages import ClientConfig, EvaluateResult, FitReply, FitResult
from fedhive.core.weights import Weights
from fedhive.server.history import RoundRecord
from fedhive.server.orchestrator import RoundLoop
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.codec import Outcome, TaskEnvelope, UploadStatus, result_header
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id
from grpc_loopback import loopback_server

SIZE = 10_000
MODEL = Weights({"w": np.zeros(SIZE, np.float32)})
EIGHT_BIT = Compression(pipeline=Pipeline((StochasticQuantization(bits=8),)))


class Smooth:
    """A client whose update is a fixed smooth curve, scaled by its index."""

    def __init__(self, index: int) -> None:
        self.index = index

    def fit(self, weights: Weights, config: ClientConfig, context: object) -> FitResult:
        curve = np.sin(np.linspace(0, 6, SIZE)).astype(np.float32) * (self.index + 1) / 10
        return FitResult(delta=Weights({"w": curve}), num_examples=10)

    def evaluate(self, weights: Weights, config: ClientConfig, context: object) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


@pytest.fixture
def server() -> Iterator[GrpcServerTransport]:
    with loopback_server() as transport:
        yield transport


class CorruptingLink(GrpcLink):
    """An attacker's link: it flips one byte of its compressed payload (and hashes and
    signs what it sends, so the upload itself is intact)."""

    def upload(self, envelope: TaskEnvelope, outcome: Outcome) -> UploadStatus:  # type: ignore[override]
        if isinstance(outcome, FitReply) and outcome.payload is not None:
            data = bytearray(outcome.payload)
            data[-40] ^= 0x01
            outcome = dataclasses.replace(outcome, payload=bytes(data))
        return super().upload(envelope, outcome)


def one_round(
    server: GrpcServerTransport, config: ClientConfig, *, links: int = 3, corrupt: str = ""
) -> RoundRecord:
    stop = threading.Event()
    threads = []
    for index in range(links):
        cls = CorruptingLink if f"c{index}" == corrupt else GrpcLink
        link = cls(f"127.0.0.1:{server.port}", client_id=f"c{index}", credentials=None)
        thread = threading.Thread(target=serve, args=(link, Smooth(index)), kwargs={"stop": stop})
        thread.start()
        threads.append(thread)
    try:
        assert server.wait_for_clients(links, timeout=20)
        strategy = Algorithm(min_available_clients=links, client_config=config)
        loop = RoundLoop(strategy=strategy, transport=server, seed=7)
        return loop.run(MODEL, 1).history[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def test_an_eight_bit_round_commits_on_under_a_third_of_the_plain_uplink() -> None:
    records = {}
    for name, config in (
        ("plain", ClientConfig()),
        ("8-bit", ClientConfig(extensions=(EIGHT_BIT,))),
    ):
        transport = GrpcServerTransport(
            address="127.0.0.1:0",
            credentials=None,
            insecure=True,
            identify=trust_claimed_id,
            round_timeout=20.0,
        )
        try:
            records[name] = one_round(transport, config)
        finally:
            transport.close()
    plain, small = records["plain"], records["8-bit"]
    assert plain.committed
    assert small.committed
    assert (plain.fit.succeeded, small.fit.succeeded) == (3, 3)
    # the plain uplink is the measured safetensors size: the model's, per client
    assert plain.fit.bytes_up == plain.fit.bytes_down
    ratio = small.fit.bytes_up / plain.fit.bytes_up
    assert ratio < 0.3, ratio


def test_a_payload_that_does_not_decode_fails_its_client_alone(
    server: GrpcServerTransport,
) -> None:
    record = one_round(server, ClientConfig(extensions=(EIGHT_BIT,)), links=4, corrupt="c1")
    assert record.committed
    assert dict(record.fit.failures) == {"verify:codec": 1}
    assert sorted(record.fit.contributors) == ["c0", "c2", "c3"]


SEEN: dict[str, dict[str, int]] = {}


class CountingLink(GrpcLink):
    """A client's link that notes the model bytes it received and the payload it sent."""

    def download(self, envelope: TaskEnvelope) -> bytes:
        data = super().download(envelope)
        SEEN.setdefault(self.client_id, {})["down"] = len(data)
        return data

    def upload(self, envelope: TaskEnvelope, outcome: Outcome) -> UploadStatus:  # type: ignore[override]
        _header, payload = result_header(outcome)
        SEEN.setdefault(self.client_id, {})["up"] = len(payload)
        return super().upload(envelope, outcome)


@pytest.mark.parametrize("config", [ClientConfig(), ClientConfig(extensions=(EIGHT_BIT,))])
def test_each_clients_bytes_are_the_model_streamed_to_it_and_the_chunks_it_uploaded(
    server: GrpcServerTransport, config: ClientConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    SEEN.clear()
    monkeypatch.setattr(sys.modules[__name__], "GrpcLink", CountingLink)
    record = one_round(server, config)
    assert record.committed
    traffic = {cid: (t.bytes_up, t.bytes_down) for cid, t in record.fit.traffic.items()}
    assert traffic == {cid: (seen["up"], seen["down"]) for cid, seen in SEEN.items()}
    assert sorted(traffic) == ["c0", "c1", "c2"]
    assert record.fit.bytes_down == sum(seen["down"] for seen in SEEN.values())
    assert record.fit.bytes_up == sum(seen["up"] for seen in SEEN.values())
    assert all(seen["down"] > SIZE * 4 for seen in SEEN.values())  # the whole float32 model
