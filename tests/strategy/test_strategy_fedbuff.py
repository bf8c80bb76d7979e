"""FedBuff: the staleness-weighted buffer mean, its state, and its config."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

import lstsq_app
from fedhive.config.simulated import DeviceDistribution, DevicesSection
from fedhive.core.messages import ClientConfig, FitReply
from fedhive.core.serde import model_version
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError, NotEnoughClientsError
from fedhive.simulation.engine import run_simulation
from fedhive.strategy import (
    Algorithm,
    Buffered,
    BufferState,
    Moments,
    ServerAdam,
    Stateless,
    StrategyName,
    StrategyState,
    build_strategy,
    fedbuff,
    state_from_bytes,
    state_to_bytes,
)
from fedhive.strategy.robust import CoordinateMedian

TRAIN = ClientConfig(local_epochs=3, learning_rate=0.05)


def reply(client: str, update: list[float], examples: int) -> FitReply:
    return FitReply(
        client_id=client,
        round=0,
        version="v",
        update=Weights({"w": np.array(update)}),
        num_examples=examples,
    )


@pytest.mark.parametrize("optimizer", [None, ServerAdam(learning_rate=0.1)])
def test_fedbuff_without_staleness_is_fedavg_bit_for_bit(optimizer: ServerAdam | None) -> None:
    app = lstsq_app.build(6, shared=False)  # every client has its own optimum
    base = Algorithm(client_config=TRAIN, server_optimizer=optimizer)
    synchronous = run_simulation(app, strategy=base, rounds=4)
    buffered = replace(base, schedule=Buffered(buffer_size=6, concurrency=6))
    asynchronous = run_simulation(app, strategy=buffered, rounds=4)
    assert model_version(asynchronous.weights) == model_version(synchronous.weights)
    assert asynchronous.state.of(BufferState).version == 4
    assert [r.train["staleness_max"] for r in asynchronous.history] == [0.0] * 4
    assert not np.array_equal(asynchronous.weights["w"], app.server.initial_weights["w"])


def sgd_state(version: int) -> StrategyState:
    """A plain FedBuff's state (server SGD, the buffer) after ``version`` versions."""
    return StrategyState((Stateless(), BufferState(version)))


def test_stale_updates_weigh_one_over_one_plus_staleness() -> None:
    strategy = fedbuff(staleness_exponent=1.0)  # s(tau) = 1 / (1 + tau)
    weights = Weights({"w": np.array([10.0, 10.0])})
    buffered = [
        (reply("a", [1.0, 1.0], 2), 0),  # weight 1 * 2
        (reply("b", [4.0, 0.0], 4), 3),  # weight 1/4 * 4
        (reply("c", [-2.0, 6.0], 2), 1),  # weight 1/2 * 2
    ]
    # (2 * [1, 1] + 1 * [4, 0] + 1 * [-2, 6]) / 4 = [1, 2]
    expected = [11.0, 12.0]
    for order in itertools.permutations(buffered):
        state, new, metrics = strategy.aggregate_buffer(sgd_state(7), weights, list(order))
        np.testing.assert_array_equal(new["w"], expected)
        assert state.of(BufferState).version == 8
        assert metrics["staleness_max"] == 3.0
        assert metrics["staleness_mean"] == pytest.approx(4 / 3)


def test_the_default_exponent_is_one_over_the_square_root() -> None:
    strategy = fedbuff()
    assert strategy.buffered.staleness_weight(0) == 1.0
    assert strategy.buffered.staleness_weight(3) == 0.5
    weights = Weights({"w": np.zeros(1)})
    buffered = [(reply("a", [3.0], 1), 0), (reply("b", [-1.0], 5), 8)]
    _, new, _ = strategy.aggregate_buffer(sgd_state(0), weights, buffered)
    s = 1 / math.sqrt(9)
    assert new["w"][0] == pytest.approx((3.0 - s * 5) / (1 + s * 5), rel=1e-12)


def test_updates_staler_than_the_limit_are_left_out() -> None:
    strategy = fedbuff(max_staleness=2, staleness_exponent=0.0)
    assert not strategy.buffered.too_stale(2)
    assert strategy.buffered.too_stale(3)
    assert not fedbuff().buffered.too_stale(10**6)  # 0: no limit
    weights = Weights({"w": np.zeros(1)})
    buffered = [(reply("a", [1.0], 1), 2), (reply("b", [100.0], 1), 3)]
    _, new, metrics = strategy.aggregate_buffer(sgd_state(0), weights, buffered)
    np.testing.assert_array_equal(new["w"], [1.0])
    assert metrics["staleness_max"] == 2.0


def test_a_buffer_without_weight_keeps_the_model_but_counts_the_version() -> None:
    weights = Weights({"w": np.ones(2)})
    state, new, _ = fedbuff().aggregate_buffer(sgd_state(1), weights, [(reply("a", [5, 5], 0), 0)])
    assert new is weights
    assert state.of(BufferState).version == 2


def test_state_round_trips_and_resumes_identically() -> None:
    strategy = fedbuff(server_optimizer=ServerAdam(learning_rate=0.1))
    weights = Weights({"w": np.zeros(3)})
    state = strategy.initial_state(weights)
    state, weights, _ = strategy.aggregate_buffer(state, weights, [(reply("a", [1, 2, 3], 2), 1)])
    restored = state_from_bytes(state_to_bytes(state))
    assert restored.of(BufferState).version == 1
    np.testing.assert_array_equal(restored.of(Moments).m, state.of(Moments).m)
    np.testing.assert_array_equal(restored.of(Moments).v, state.of(Moments).v)
    assert restored.of(Moments).step == state.of(Moments).step
    more = [(reply("b", [-1, 0, 4], 3), 0)]
    after, w1, _ = strategy.aggregate_buffer(state, weights, more)
    after_restored, w2, _ = strategy.aggregate_buffer(restored, weights, more)
    assert model_version(w1) == model_version(w2)
    assert after_restored.of(BufferState).version == after.of(BufferState).version == 2


def test_refills_pick_idle_clients_up_to_the_concurrency() -> None:
    strategy = fedbuff(per_client={"c3": ClientConfig(batch_size=2)}, concurrency=4)
    clients = [f"c{i}" for i in range(8)]
    rng = np.random.default_rng(0)
    chosen = strategy.configure_refill(sgd_state(0), clients, {"c0", "c1"}, rng)
    ids = [i.client_id for i in chosen]
    assert len(ids) == 2
    assert not {"c0", "c1"} & set(ids)
    assert ids == sorted(ids)
    assert strategy.configure_refill(sgd_state(0), clients, {"c0", "c1", "c2", "c3"}, rng) == []
    everyone = strategy.configure_refill(sgd_state(0), clients[:3], set(), rng)
    assert [i.client_id for i in everyone] == ["c0", "c1", "c2"]  # fewer clients than C
    configs = {
        i.client_id: i.config for i in strategy.configure_refill(sgd_state(0), ["c3"], (), rng)
    }
    assert configs["c3"].batch_size == 2
    needy = fedbuff(min_available_clients=5)
    with pytest.raises(NotEnoughClientsError):
        needy.configure_refill(sgd_state(0), clients[:4], (), rng)


def test_fedbuff_converges_to_the_optimum_with_heterogeneous_devices() -> None:
    devices = DevicesSection(distribution=DeviceDistribution.PARETO, alpha=1.2, jitter=0.3)
    strategy = fedbuff(client_config=TRAIN, buffer_size=3, concurrency=8)
    result = run_simulation(lstsq_app.build(20), strategy=strategy, rounds=150, devices=devices)
    assert max(r.train["staleness_max"] for r in result.history) >= 2  # it was asynchronous
    assert result.history[0].centralized["distance"] > 1.0
    assert result.history[-1].centralized["distance"] < 1e-6


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"buffer_size": 0}, r"strategy\.buffer_size: must be an integer >= 1"),
        ({"concurrency": 1.5}, r"strategy\.concurrency: must be an integer"),
        ({"staleness_exponent": -1}, r"strategy\.staleness_exponent: must be a finite number"),
        ({"max_staleness": -1}, r"strategy\.max_staleness: must be an integer >= 0"),
        ({"aggregator": "median"}, r"strategy\.aggregator: robust rules .* not supported"),
        ({"fraction_fit": 2.0}, r"strategy\.fraction_fit: must be in"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_strategy(StrategyName.FEDBUFF, table, ClientConfig(), path="strategy")


def test_config_builds_fedbuff_around_its_base() -> None:
    table = {"buffer_size": 5, "concurrency": 12, "max_staleness": 4, "server_learning_rate": 0.5}
    strategy = build_strategy(StrategyName.FEDBUFF, table, TRAIN, path="strategy")
    assert isinstance(strategy, Algorithm)
    assert isinstance(strategy.schedule, Buffered)
    schedule = strategy.buffered
    assert (schedule.buffer_size, schedule.concurrency, schedule.max_staleness) == (5, 12, 4)
    assert schedule.staleness_exponent == 0.5
    assert strategy.server_learning_rate == 0.5
    assert strategy.client_config == TRAIN
    with pytest.raises(ConfigError, match=r"strategy\.buffer_size: unknown key"):
        build_strategy(StrategyName.FEDAVG, {"buffer_size": 5}, TRAIN, path="strategy")
    with pytest.raises(ConfigError, match="robust rules"):
        fedbuff(aggregator=CoordinateMedian())
