"""Compressed updates through whole simulated rounds: both backends, corruption, SecAgg.

A ``Compression`` instruction in the client config makes every client send its update
as a :mod:`fedhive.compression` payload; the server decodes it with the published
model's layout before verifying it. The local and the process backend give the same
model bit for bit (the codec's randomness is the task's seed stream); a payload that
does not decode fails its client alone (``verify:codec``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from fedhive.compression import Pipeline, StochasticQuantization, TopK, Zstd
from fedhive.core.extensions import Compression, Weighting
from fedhive.core.messages import ClientConfig, FitReply, FitTask
from fedhive.core.weights import Weights
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.secure import SecureAggregation
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.engine import Backend, run_simulation
from fedhive.strategy import Algorithm
from fedhive.transport.base import FitOutcome
from fedhive.transport.inprocess import InProcessTransport
from lstsq_app import build

CLIENT = ClientConfig(local_epochs=3, learning_rate=0.05)
EIGHT_BIT = Pipeline((StochasticQuantization(bits=8),))
TOP_HALF = Pipeline((TopK(0.5), Zstd(3)))


def compressed(pipeline: Pipeline | None) -> Algorithm:
    config = CLIENT if pipeline is None else CLIENT.with_extensions(Compression(pipeline=pipeline))
    return Algorithm(fraction_fit=0.5, client_config=config)


@pytest.mark.parametrize("pipeline", [EIGHT_BIT, TOP_HALF], ids=["8-bit", "topk-ef"])
def test_local_and_process_backends_give_the_same_compressed_model(pipeline: Pipeline) -> None:
    app = build(6)
    runs = {
        backend: run_simulation(
            app, strategy=compressed(pipeline), rounds=3, seed=5, backend=backend
        )
        for backend in (Backend.LOCAL, Backend.PROCESS)
    }
    local, process = runs[Backend.LOCAL], runs[Backend.PROCESS]
    assert local.version == process.version
    assert all(r.committed and r.fit.failed == 0 for r in local.history)
    plain = run_simulation(app, strategy=compressed(None), rounds=3, seed=5)
    assert local.version != plain.version  # the codec did change what was summed
    # measured uplink: the payloads' sizes, the same on both backends; not the plain
    # size (on this 4-parameter model the payload's frame outweighs the floats it saves)
    assert [r.fit.bytes_up for r in local.history] == [r.fit.bytes_up for r in process.history]
    for sent, estimate in zip(local.history, plain.history, strict=True):
        assert sent.fit.bytes_up not in (0, estimate.fit.bytes_up)


def test_an_uncompressed_run_counts_the_plain_update_size_on_both_backends() -> None:
    app = build(4)
    local = run_simulation(app, strategy=compressed(None), rounds=1, seed=1)
    process = run_simulation(
        app, strategy=compressed(None), rounds=1, seed=1, backend=Backend.PROCESS
    )
    record = local.history[0]
    assert record.fit.bytes_up == process.history[0].fit.bytes_up
    assert record.fit.bytes_up == record.fit.bytes_down  # same layout up as down


class CorruptingRunner:
    """A local backend whose client ``victim``'s payload has one byte flipped."""

    def __init__(self, inner: LocalBackend, victim: str) -> None:
        self.inner, self.victim = inner, victim

    def fit(self, tasks: Sequence[FitTask], weights: Weights) -> Iterator[FitOutcome]:
        for outcome in self.inner.fit(tasks, weights):
            if isinstance(outcome, FitReply) and outcome.client_id == self.victim:
                assert outcome.payload is not None
                data = bytearray(outcome.payload)
                data[len(data) // 2] ^= 0x40
                yield dataclasses.replace(outcome, payload=bytes(data))
            else:
                yield outcome

    def evaluate(self, tasks: Sequence[object], weights: Weights) -> Iterator[object]:
        return self.inner.evaluate(tasks, weights)  # type: ignore[arg-type]

    def close(self) -> None:
        self.inner.close()


def test_a_corrupted_payload_fails_its_client_alone() -> None:
    app = build(4)
    runner = CorruptingRunner(LocalBackend(app.client.client_fn), victim="c2")
    transport = InProcessTransport(client_ids=app.client_ids, runner=runner)  # type: ignore[arg-type]
    strategy = dataclasses.replace(compressed(EIGHT_BIT), fraction_fit=1.0)
    loop = RoundLoop(strategy=strategy, transport=transport, seed=3)
    result = loop.run(app.server.initial_weights, 2)
    for record in result.history:
        assert record.committed
        assert dict(record.fit.failures) == {"verify:codec": 1}
        assert (record.fit.succeeded, record.fit.failed) == (3, 1)
        assert "c2" not in record.fit.contributors
    assert np.all(np.isfinite(result.weights["w"]))


SECURE = SecureAggregation(
    weighting=Weighting.EXAMPLES,
    clip_range=8.0,
    dropout_fraction=0.0,
    corruption_fraction=0.0,
    security_bits=20,
    correctness_bits=2,
)


def test_quantization_runs_before_the_masks_under_secure_aggregation() -> None:
    app = build(4)
    strategy = dataclasses.replace(compressed(EIGHT_BIT), fraction_fit=1.0)
    masked = run_simulation(app, strategy=strategy, rounds=2, seed=4, secure=SECURE)
    plain = dataclasses.replace(compressed(None), fraction_fit=1.0)
    unmasked = run_simulation(app, strategy=plain, rounds=2, seed=4, secure=SECURE)
    assert all(r.committed for r in masked.history)
    assert masked.version != unmasked.version  # the quantized updates were masked
    # both near the same model: 8-bit rounding moves each value by < one step
    np.testing.assert_allclose(masked.weights["w"], unmasked.weights["w"], atol=0.05)
