"""FedBuff: the staleness-weighted buffer mean, its state, and its config."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import lstsq_app
from fedhive.core.messages import ClientConfig, FitReply
from fedhive.core.serde import model_version, record_from_bytes, record_to_bytes
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError, NotEnoughClientsError
from fedhive.simulation.devices import DeviceDistribution, DevicesSection
from fedhive.simulation.engine import run_simulation
from fedhive.strategy import FedAvg, ServerAdam, StrategyName, build_strategy
from fedhive.strategy.fedbuff import VERSION_KEY, FedBuff
from fedhive.strategy.optimizers import M_KEY, V_KEY
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
    base = FedAvg(client_config=TRAIN, server_optimizer=optimizer)
    fedavg = run_simulation(app, strategy=base, rounds=4)
    fedbuff = run_simulation(
        app, strategy=FedBuff(base=base, buffer_size=6, concurrency=6), rounds=4
    )
    assert model_version(fedbuff.weights) == model_version(fedavg.weights)
    assert fedbuff.state[VERSION_KEY] == 4
    assert [r.train["staleness_max"] for r in fedbuff.history] == [0.0] * 4
    assert not np.array_equal(fedbuff.weights["w"], app.server.initial_weights["w"])


def test_stale_updates_weigh_one_over_one_plus_staleness() -> None:
    strategy = FedBuff(staleness_exponent=1.0)  # s(tau) = 1 / (1 + tau)
    weights = Weights({"w": np.array([10.0, 10.0])})
    buffered = [
        (reply("a", [1.0, 1.0], 2), 0),  # weight 1 * 2
        (reply("b", [4.0, 0.0], 4), 3),  # weight 1/4 * 4
        (reply("c", [-2.0, 6.0], 2), 1),  # weight 1/2 * 2
    ]
    # (2 * [1, 1] + 1 * [4, 0] + 1 * [-2, 6]) / 4 = [1, 2]
    expected = [11.0, 12.0]
    for order in itertools.permutations(buffered):
        state, new, metrics = strategy.aggregate_buffer({VERSION_KEY: 7}, weights, list(order))
        np.testing.assert_array_equal(new["w"], expected)
        assert state[VERSION_KEY] == 8
        assert metrics["staleness_max"] == 3.0
        assert metrics["staleness_mean"] == pytest.approx(4 / 3)


def test_the_default_exponent_is_one_over_the_square_root() -> None:
    strategy = FedBuff()
    assert strategy.staleness_weight(0) == 1.0
    assert strategy.staleness_weight(3) == 0.5
    weights = Weights({"w": np.zeros(1)})
    buffered = [(reply("a", [3.0], 1), 0), (reply("b", [-1.0], 5), 8)]
    _, new, _ = strategy.aggregate_buffer({}, weights, buffered)
    s = 1 / math.sqrt(9)
    assert new["w"][0] == pytest.approx((3.0 - s * 5) / (1 + s * 5), rel=1e-12)


def test_updates_staler_than_the_limit_are_left_out() -> None:
    strategy = FedBuff(max_staleness=2, staleness_exponent=0.0)
    assert not strategy.too_stale(2)
    assert strategy.too_stale(3)
    assert not FedBuff().too_stale(10**6)  # 0: no limit
    weights = Weights({"w": np.zeros(1)})
    buffered = [(reply("a", [1.0], 1), 2), (reply("b", [100.0], 1), 3)]
    _, new, metrics = strategy.aggregate_buffer({}, weights, buffered)
    np.testing.assert_array_equal(new["w"], [1.0])
    assert metrics["staleness_max"] == 2.0


def test_a_buffer_without_weight_keeps_the_model_but_counts_the_version() -> None:
    weights = Weights({"w": np.ones(2)})
    state, new, _ = FedBuff().aggregate_buffer(
        {VERSION_KEY: 1}, weights, [(reply("a", [5, 5], 0), 0)]
    )
    assert new is weights
    assert state[VERSION_KEY] == 2


def test_state_round_trips_and_resumes_identically() -> None:
    strategy = FedBuff(base=FedAvg(server_optimizer=ServerAdam(learning_rate=0.1)))
    weights = Weights({"w": np.zeros(3)})
    state = strategy.initial_state(weights)
    state, weights, _ = strategy.aggregate_buffer(state, weights, [(reply("a", [1, 2, 3], 2), 1)])
    restored = record_from_bytes(record_to_bytes(state))
    assert restored[VERSION_KEY] == 1
    np.testing.assert_array_equal(restored[M_KEY], state[M_KEY])
    np.testing.assert_array_equal(restored[V_KEY], state[V_KEY])
    more = [(reply("b", [-1, 0, 4], 3), 0)]
    after, w1, _ = strategy.aggregate_buffer(state, weights, more)
    after_restored, w2, _ = strategy.aggregate_buffer(restored, weights, more)
    assert model_version(w1) == model_version(w2)
    assert after_restored[VERSION_KEY] == after[VERSION_KEY] == 2


def test_refills_pick_idle_clients_up_to_the_concurrency() -> None:
    strategy = FedBuff(base=FedAvg(per_client={"c3": ClientConfig(batch_size=2)}), concurrency=4)
    clients = [f"c{i}" for i in range(8)]
    rng = np.random.default_rng(0)
    chosen = strategy.configure_refill({}, clients, {"c0", "c1"}, rng)
    ids = [i.client_id for i in chosen]
    assert len(ids) == 2
    assert not {"c0", "c1"} & set(ids)
    assert ids == sorted(ids)
    assert strategy.configure_refill({}, clients, {"c0", "c1", "c2", "c3"}, rng) == []
    everyone = strategy.configure_refill({}, clients[:3], set(), rng)
    assert [i.client_id for i in everyone] == ["c0", "c1", "c2"]  # fewer clients than C
    configs = {i.client_id: i.config for i in strategy.configure_refill({}, ["c3"], (), rng)}
    assert configs["c3"].batch_size == 2
    needy = FedBuff(base=FedAvg(min_available_clients=5))
    with pytest.raises(NotEnoughClientsError):
        needy.configure_refill({}, clients[:4], (), rng)


def test_fedbuff_converges_to_the_optimum_with_heterogeneous_devices() -> None:
    devices = DevicesSection(distribution=DeviceDistribution.PARETO, alpha=1.2, jitter=0.3)
    strategy = FedBuff(base=FedAvg(client_config=TRAIN), buffer_size=3, concurrency=8)
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
    assert isinstance(strategy, FedBuff)
    assert (strategy.buffer_size, strategy.concurrency, strategy.max_staleness) == (5, 12, 4)
    assert strategy.staleness_exponent == 0.5
    assert strategy.base.server_learning_rate == 0.5
    assert strategy.base.client_config == TRAIN
    with pytest.raises(ConfigError, match=r"strategy\.buffer_size: unknown key"):
        build_strategy(StrategyName.FEDAVG, {"buffer_size": 5}, TRAIN, path="strategy")
    with pytest.raises(ConfigError, match="robust rules"):
        FedBuff(base=FedAvg(aggregator=CoordinateMedian()))
