"""Secure aggregation in the round loop: the server sees protocol messages and the sum."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest

from fedhive.config import parse_config
from fedhive.config.secagg import SimulatedDropout
from fedhive.core.messages import ClientConfig, FitTask, SecAggReply
from fedhive.core.version import ModelVersion
from fedhive.errors import ConfigError
from fedhive.secagg import AdvertiseKeys, MaskedInput, ShareKeys, Stage, UnmaskResponse
from fedhive.secagg import decode_message as decode
from fedhive.secagg.weighting import Weighting
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.secure import SecureAggregation
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.engine import run_simulation
from fedhive.simulation.secure import SecAggDevices
from fedhive.strategy import Algorithm
from fedhive.transport.base import SecureOutcome, StageOutcome
from fedhive.transport.inprocess import InProcessTransport
from lstsq_app import build

CLIENTS = 40
# 40 clients, 30% may drop: a complete graph with threshold 20 (privacy 2^-20 against
# 10% colluders, a round fails for lack of shares with probability <= 2^-2 / 40).
SECURE = SecureAggregation(
    dropout_fraction=0.3, correctness_bits=2, security_bits=20, clip_range=4.0
)
STRATEGY = Algorithm(client_config=ClientConfig(local_epochs=1, learning_rate=0.1))


def plain_mean(app_clients: Sequence[str]) -> np.ndarray:
    """The example-weighted mean update of ``app_clients`` from the zero model."""
    app = build(CLIENTS)
    total, weight = np.zeros(4), 0
    for cid in app_clients:
        result = app.client.client_fn(cid).fit(
            app.server.initial_weights, STRATEGY.client_config, None
        )  # type: ignore[arg-type]
        assert result.weights is not None
        total += result.num_examples * result.weights["w"]
        weight += result.num_examples
    return total / weight


def bound() -> float:
    """Stochastic rounding errs by at most one quantization step per coordinate."""
    return 2 * SECURE.clip_range / 2 ** SECURE.params(CLIENTS).quantization_bits


def test_the_unmasked_mean_equals_plaintext_fedavg_within_the_quantization_bound() -> None:
    plain = run_simulation(build(CLIENTS), strategy=STRATEGY, rounds=1)
    secure = run_simulation(build(CLIENTS), strategy=STRATEGY, rounds=1, secure=SECURE)
    record = secure.history[0]
    assert record.committed
    assert sorted(record.fit.contributors) == sorted(f"c{i}" for i in range(CLIENTS))
    np.testing.assert_allclose(secure.weights["w"], plain.weights["w"], rtol=0, atol=bound())
    assert not np.array_equal(secure.weights["w"], plain.weights["w"])  # it was quantized


@pytest.mark.parametrize("stage", list(Stage)[:4])
def test_thirty_percent_vanishing_at_a_stage_still_completes(stage: Stage) -> None:
    dropout = SimulatedDropout(fraction=0.3, stage=stage)
    result = run_simulation(
        build(CLIENTS), strategy=STRATEGY, rounds=1, secure=SECURE, dropout=dropout
    )
    record = result.history[0]
    assert record.committed, record.note
    survivors = record.fit.contributors
    # Vanishing before sending the masked input leaves one out of the sum; vanishing
    # while unmasking does not (the others' shares remove its masks).
    assert len(survivors) == CLIENTS - (0 if stage == Stage.UNMASKING else 12)
    assert record.fit.failures == {"secagg:dropout": 12}
    expected = plain_mean(survivors)
    np.testing.assert_allclose(result.weights["w"], expected, rtol=0, atol=bound())


def transport(dropout: SimulatedDropout | None = None) -> SecAggDevices:
    app = build(CLIENTS)
    inner = InProcessTransport(client_ids=app.client_ids, runner=LocalBackend(app.client.client_fn))
    return SecAggDevices(inner, seed=0, dropout=dropout)


def test_a_simulated_device_masks_by_the_weighting_its_task_names() -> None:
    # The server names the round's weighting in each fit task, as in deployment; a
    # device that weighted by its example count anyway fails the uniform-weight check.
    uniform = dataclasses.replace(SECURE, weighting=Weighting.UNIFORM)
    loop = RoundLoop(strategy=STRATEGY, transport=transport(), seed=0, secure=uniform)
    record = loop.run(build(CLIENTS).server.initial_weights, 1).history[0]
    assert record.committed, record.note
    assert len(record.fit.contributors) == CLIENTS


def test_below_the_threshold_nothing_is_unmasked_and_the_next_round_is_normal() -> None:
    app = build(CLIENTS)
    state = STRATEGY.initial_state(app.server.initial_weights)
    lossy = RoundLoop(
        strategy=STRATEGY,
        transport=transport(SimulatedDropout(fraction=0.6, stage=Stage.MASKED_INPUT)),
        seed=0,
        secure=SECURE,
    )
    initial = ModelVersion.of(app.server.initial_weights)
    state, model, first = lossy.run_round(state, 1, initial)
    assert not first.committed
    assert "secure aggregation aborted" in first.note
    assert first.fit.contributors == []
    assert model is initial
    normal = RoundLoop(strategy=STRATEGY, transport=transport(), seed=0, secure=SECURE)
    _, model, second = normal.run_round(state, 2, model)
    assert second.committed
    assert len(second.fit.contributors) == CLIENTS


class Recording(SecAggDevices):
    """Keeps every byte string the server is handed."""

    seen: list[bytes]

    def fit_secure(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, setup: bytes
    ) -> Iterator[SecureOutcome]:
        for outcome in super().fit_secure(tasks, model, setup=setup):
            if isinstance(outcome, SecAggReply):
                self.seen.append(outcome.message)
            yield outcome

    def exchange(self, round: int, messages: Mapping[str, bytes]) -> Iterator[StageOutcome]:
        for item in super().exchange(round, messages):
            if isinstance(item, tuple):
                self.seen.append(item[1])
            yield item


def test_the_server_is_handed_protocol_messages_never_an_update() -> None:
    app = build(CLIENTS)
    inner = InProcessTransport(client_ids=app.client_ids, runner=LocalBackend(app.client.client_fn))
    recording = Recording(inner, seed=0)
    recording.seen = []
    loop = RoundLoop(strategy=STRATEGY, transport=recording, seed=0, secure=SECURE)
    loop.run(app.server.initial_weights, 1)
    kinds = {type(decode(data)) for data in recording.seen}
    assert kinds == {AdvertiseKeys, ShareKeys, MaskedInput, UnmaskResponse}
    updates = [
        app.client.client_fn(f"c{i}")
        .fit(app.server.initial_weights, STRATEGY.client_config, None)  # type: ignore[arg-type]
        .weights["w"]  # type: ignore[index]
        for i in range(CLIENTS)
    ]
    for update in updates:  # no update's bytes appear in anything the server got
        assert not any(update.tobytes() in data for data in recording.seen)


class Garbling(SecAggDevices):
    """Client ``cheat`` deals share ciphertexts that do not decrypt to its first
    ``holders`` neighbours (one flipped byte each)."""

    cheat = "c3"
    holders = 3

    def exchange(self, round: int, messages: Mapping[str, bytes]) -> Iterator[StageOutcome]:
        for item in super().exchange(round, messages):
            if isinstance(item, tuple) and item[0] == self.cheat:
                yield item[0], self.garble(item[1])
            else:
                yield item

    def garble(self, data: bytes) -> bytes:
        message = decode(data)
        if not isinstance(message, ShareKeys):
            return data
        packets = list(message.packets)
        for index, packet in enumerate(packets[: self.holders]):
            flipped = bytes([packet.ciphertext[0] ^ 1]) + packet.ciphertext[1:]
            packets[index] = dataclasses.replace(packet, ciphertext=flipped)
        return dataclasses.replace(message, packets=tuple(packets)).to_bytes()


@pytest.mark.parametrize("holders", [3, CLIENTS - 1])
def test_a_dealer_whose_shares_do_not_decrypt_is_a_failure_of_the_round(holders: int) -> None:
    app = build(CLIENTS)
    inner = InProcessTransport(client_ids=app.client_ids, runner=LocalBackend(app.client.client_fn))
    garbling = Garbling(inner, seed=0)
    garbling.holders = holders
    loop = RoundLoop(strategy=STRATEGY, transport=garbling, seed=0, secure=SECURE)
    record = loop.run(app.server.initial_weights, 1).history[0]
    # A few unreadable shares are skipped (the round completes, the dealer's input in
    # it); all of them abort the round. Either way the dealer is blamed in the record.
    assert record.committed == (holders == 3), record.note
    assert record.fit.failures == {"secagg:unreadable_shares": 1}
    assert record.fit.failed == 1


def test_secagg_section_parses_and_refuses_what_it_cannot_serve() -> None:
    run = {"app": "x:y", "rounds": 1}
    config = parse_config({"run": run, "secagg": {"clip_range": 2.0, "simulated_dropout": 0.1}})
    assert config.secagg is not None
    assert config.secagg.clip_range == 2.0
    assert config.secagg_dropout == SimulatedDropout(fraction=0.1)
    with pytest.raises(ConfigError, match="distributed"):
        parse_config({"run": run, "secagg": {}, "privacy": {}})
    with pytest.raises(ConfigError, match="mean aggregator"):
        parse_config({"run": run, "secagg": {}, "strategy": {"aggregator": "median"}})
    with pytest.raises(ConfigError, match=r"secagg\.clip_range"):
        parse_config({"run": run, "secagg": {"clip_range": -1}})
    dp = parse_config({"run": run, "secagg": {}, "privacy": {"mode": "distributed"}})
    assert dp.secagg is not None
    assert str(dp.secagg.weighting) == "uniform"


def test_distributed_dp_under_secure_aggregation_reports_its_epsilon() -> None:
    pytest.importorskip("dp_accounting")
    config = parse_config(
        {
            "run": {"app": "lstsq_app:build", "rounds": 2},
            "app": {"num_clients": CLIENTS},
            "secagg": {
                "dropout_fraction": 0.3,
                "correctness_bits": 2,
                "security_bits": 20,
                "clip_range": 4.0,
            },
            "privacy": {"mode": "distributed", "noise_multiplier": 0.5, "clipping_norm": 5.0},
        }
    )
    app = build(CLIENTS)
    result = run_simulation(
        app, strategy=config.strategy, rounds=2, secure=config.secagg, dropout=None
    )
    assert all(r.committed for r in result.history), [r.note for r in result.history]
    assert 0 < result.history[0].privacy.epsilon < result.history[1].privacy.epsilon
    assert len(result.history[1].fit.contributors) == CLIENTS
