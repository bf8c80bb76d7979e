"""Large models cross the wire in chunks; declared sizes over a limit are refused."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fedhive import ClientConfig, Context, EvaluateResult, FitResult, Weights
from fedhive.client.runner import serve
from fedhive.core.messages import FitTask
from fedhive.core.serde import model_version
from fedhive.core.version import ModelVersion
from fedhive.errors import ValidationError
from fedhive.server.orchestrator import RoundLoop
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.base import Wait
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id


class AddOne:
    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        return FitResult(
            delta=Weights({k: np.ones_like(v) for k, v in weights.items()}), num_examples=1
        )

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=0)


@pytest.mark.slow
def test_a_100_mb_model_makes_a_round_trip() -> None:
    weights = Weights({"big": np.zeros(25_000_000, np.float32)})  # 100 MB
    server = GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        round_timeout=300,
        max_message_mib=256,
    )
    stop = threading.Event()
    link = GrpcLink(
        f"127.0.0.1:{server.port}", client_id="c", credentials=None, max_model_mib=256, timeout=300
    )
    thread = threading.Thread(target=serve, args=(link, AddOne()), kwargs={"stop": stop})
    thread.start()
    try:
        assert server.wait_for_clients(1, timeout=30)
        result = RoundLoop(strategy=Algorithm(), transport=server, seed=0).run(weights, 1)
    finally:
        stop.set()
        thread.join(timeout=60)
        link.close()
        server.close()
    record = result.history[0]
    assert record.committed
    assert record.fit.bytes_up > 100_000_000
    assert float(result.weights["big"][0]) == 1.0
    assert float(result.weights["big"][-1]) == 1.0


def test_a_model_over_the_client_limit_is_refused_before_download() -> None:
    weights = Weights({"w": np.zeros(600_000, np.float32)})  # 2.4 MB
    server = GrpcServerTransport(
        address="127.0.0.1:0", credentials=None, insecure=True, identify=trust_claimed_id
    )
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="c", credentials=None, max_model_mib=1)
    try:
        link.register()
        task = FitTask(
            round=1, client_id="c", version=model_version(weights), seed=0, config=ClientConfig()
        )
        server.fit([task], ModelVersion.of(weights))
        envelope = link.pull()
        assert not isinstance(envelope, Wait)
        with pytest.raises(ValidationError, match="the limit is 1048576 bytes"):
            link.download(envelope)
    finally:
        link.close()
        server.close()


def test_an_upload_over_the_server_limit_is_rejected_and_counted() -> None:
    weights = Weights({"w": np.zeros(600_000, np.float32)})  # 2.4 MB
    server = GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=None,
        insecure=True,
        identify=trust_claimed_id,
        max_message_mib=1,
        round_timeout=30,
    )
    stop = threading.Event()
    link = GrpcLink(f"127.0.0.1:{server.port}", client_id="c", credentials=None)
    thread = threading.Thread(target=serve, args=(link, AddOne()), kwargs={"stop": stop})
    thread.start()
    try:
        assert server.wait_for_clients(1, timeout=30)
        record = (
            RoundLoop(strategy=Algorithm(), transport=server, seed=0).run(weights, 1).history[0]
        )
    finally:
        stop.set()
        thread.join(timeout=30)
        link.close()
        server.close()
    assert not record.committed
    assert dict(record.fit.failures) == {"upload:validation": 1}
