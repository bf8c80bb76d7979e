"""SCAFFOLD: control variates on the server and the clients, and what they correct."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedhive.client import scaffold as client_scaffold
from fedhive.client.app import ClientApp
from fedhive.client.base import Context, TaskOrigin
from fedhive.client.pipeline import run_fit
from fedhive.config.simulated import Backend
from fedhive.core.failures import FailureKind
from fedhive.core.messages import ClientConfig, EvaluateResult, FitReply, FitResult, FitTask
from fedhive.core.rng import run_stream
from fedhive.core.serde import model_version, record_from_bytes, record_to_bytes
from fedhive.core.weights import Weights
from fedhive.errors import StateError
from fedhive.server.app import ServerApp
from fedhive.simulation.app import SimulationApp
from fedhive.simulation.engine import run_simulation
from fedhive.strategy import (
    Algorithm,
    Control,
    ControlVariates,
    StrategyName,
    build_strategy,
    scaffold,
    state_from_bytes,
    state_to_bytes,
)
from fedhive.strategy.compose import WeightedMean
from fedhive.strategy.robust import CoordinateMedian, NormBound
from fedhive.strategy.state import Stateless, StrategyState

# Client drift (Karimireddy et al. 2020, sec. 3): client i minimises
# f_i(x) = a_i/2 * ||x - b_i||^2. The optimum of the sum is sum(a_i b_i) / sum(a_i);
# FedAvg with many local steps converges to a point weighted by 1 - (1 - lr a_i)^K instead.
CURVATURES = (0.05, 0.2, 1.0, 4.0)
DIM = 3


def optimum(i: int) -> np.ndarray:
    return np.random.default_rng(i).normal(scale=3.0, size=DIM)


GLOBAL_OPTIMUM = sum(a * optimum(i) for i, a in enumerate(CURVATURES)) / sum(CURVATURES)


class QuadraticClient:
    """Gradient descent on a_i/2 ||x - b_i||^2, with SCAFFOLD's correction when sent."""

    def __init__(self, client_id: str) -> None:
        index = int(client_id.removeprefix("c"))
        self.a, self.b = CURVATURES[index], optimum(index)

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        x = weights["x"].astype(np.float64)
        control = client_scaffold.correction(context)
        for _ in range(config.local_epochs):
            grad = self.a * (x - self.b)
            if control is not None:
                grad = grad + control["x"]
            x = x - config.learning_rate * grad
        new = Weights({"x": x})
        aux = None
        if control is not None:
            delta = Weights({"x": x - weights["x"]})
            aux = client_scaffold.finish(context, delta, config.local_epochs, config.learning_rate)
        return FitResult(weights=new, num_examples=10, aux=aux)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def quadratic_app() -> SimulationApp:
    return SimulationApp(
        server=ServerApp(initial_weights=Weights({"x": np.zeros(DIM)})),
        client=ClientApp(client_fn=QuadraticClient),
        client_ids=[f"c{i}" for i in range(len(CURVATURES))],
    )


LOCAL = ClientConfig(local_epochs=30, learning_rate=0.2)


def distance_after(strategy: Any, rounds: int, backend: Backend = Backend.LOCAL) -> float:
    result = run_simulation(quadratic_app(), strategy=strategy, rounds=rounds, backend=backend)
    return float(np.linalg.norm(result.weights["x"] - GLOBAL_OPTIMUM))


def test_scaffold_beats_fedavg_on_client_drift() -> None:
    fedavg = distance_after(Algorithm(client_config=LOCAL), rounds=120)
    corrected = distance_after(scaffold(client_config=LOCAL), rounds=120)
    assert fedavg > 0.5  # FedAvg settles at the drifted point
    assert corrected < 1e-3  # SCAFFOLD reaches the optimum of the federation
    assert corrected < fedavg / 100


def test_scaffold_is_the_same_on_the_process_backend() -> None:
    strategy = scaffold(client_config=LOCAL)
    local = run_simulation(quadratic_app(), strategy=strategy, rounds=5)
    forked = run_simulation(quadratic_app(), strategy=strategy, rounds=5, backend=Backend.PROCESS)
    assert model_version(local.weights) == model_version(forked.weights)
    np.testing.assert_array_equal(local.state.of(Control).c, forked.state.of(Control).c)


def test_broadcast_adds_a_control_variate_for_each_float_tensor() -> None:
    weights = Weights({"w": np.ones((2, 2), np.float32), "steps": np.array([3], np.int64)})
    strategy = scaffold()
    state = strategy.initial_state(weights)
    sent = strategy.broadcast(state, weights)
    assert list(sent) == ["w", "steps", "@scaffold/w"]
    assert sent["@scaffold/w"].dtype == np.float32
    assert not sent["@scaffold/w"].any()


def reply(client: str, update: float, dc: float) -> FitReply:
    return FitReply(
        client_id=client,
        round=1,
        version="v",
        update=Weights({"w": np.full(2, update), "@scaffold/w": np.full(2, dc)}),
        num_examples=1,
    )


def test_server_variate_moves_by_the_sampled_fraction_of_the_mean_change() -> None:
    weights = Weights({"w": np.zeros(2)})
    strategy = scaffold(fraction_fit=0.5)
    state = strategy.initial_state(weights)
    replies = [reply("a", 1.0, 2.0), reply("b", 3.0, 4.0)]
    state, new, _ = strategy.aggregate_fit(state, 1, weights, iter(replies))
    np.testing.assert_array_equal(new["w"], [2.0, 2.0])  # FedAvg step on the model part
    np.testing.assert_array_equal(state.of(Control).c, [1.5, 1.5])  # 0.5 * mean(2, 4)
    restored = state_from_bytes(state_to_bytes(state))
    np.testing.assert_array_equal(restored.of(Control).c, state.of(Control).c)


def test_one_attackers_variate_change_does_not_move_c_under_the_median() -> None:
    # F15: dc_i bypassed the robust rule; one dc of 1e8 moved c to ~1e7 under the median
    weights = Weights({"w": np.zeros(2)})
    strategy = scaffold(aggregator=CoordinateMedian())
    state = strategy.initial_state(weights)
    replies = [reply(f"h{i}", 0.01, 0.01) for i in range(9)] + [reply("evil", 1e8, 1e8)]
    state, new, _ = strategy.aggregate_fit(state, 1, weights, iter(replies))
    np.testing.assert_array_equal(new["w"], [0.01, 0.01])
    np.testing.assert_array_equal(state.of(Control).c, [0.01, 0.01])  # fraction_fit 1 * median


def test_the_norm_bound_clips_each_variate_change_as_it_clips_updates() -> None:
    # F15: max_update_norm did not apply to dc_i
    weights = Weights({"w": np.zeros(2)})
    strategy = scaffold(aggregator=NormBound(inner=WeightedMean(), max_norm=1.0))
    state = strategy.initial_state(weights)
    replies = [reply("a", 0.0, 0.0), reply("evil", 300.0, 400.0 / np.sqrt(2))]
    state, new, _ = strategy.aggregate_fit(state, 1, weights, iter(replies))
    assert np.linalg.norm(state.of(Control).c) <= 0.5  # the mean of norms 0 and <= 1
    np.testing.assert_allclose(state.of(Control).c, np.full(2, 0.5 / np.sqrt(2)), rtol=1e-12)
    assert np.linalg.norm(new["w"]) <= 0.5


def test_a_client_that_ignores_the_control_variates_fails_clearly() -> None:
    class Plain:
        def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
            return FitResult(weights=weights, num_examples=1)

        def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> Any:
            raise NotImplementedError

    model = Weights({"w": np.zeros(2)})
    strategy = scaffold()
    sent = strategy.broadcast(strategy.initial_state(model), model)
    task = FitTask(round=1, client_id="c", version="v", seed=1, config=ClientConfig())
    outcome = run_fit(Plain(), task, sent, {}, origin=TaskOrigin.simulation(task))
    assert not isinstance(outcome, FitReply)
    assert (outcome.kind, outcome.detail) == (FailureKind.CLIENT_ERROR, "ClientError")
    assert "SCAFFOLD" in outcome.message


def test_client_variate_follows_option_two() -> None:
    c = np.array([1.0, -1.0])
    context = Context(
        client_id="c",
        round=1,
        seed=run_stream(0),
        state={"scaffold/w": np.array([0.5, 0.5])},
        aux=Weights({"@scaffold/w": c}),
    )
    np.testing.assert_array_equal(client_scaffold.correction(context)["w"], [0.5, -1.5])
    delta = Weights({"w": np.array([-0.4, 0.2])})
    change = client_scaffold.finish(context, delta, steps=4, learning_rate=0.1)
    new = np.array([0.5, 0.5]) - c - delta["w"] / 0.4  # c_i - c + (x - y) / (K lr)
    # a few float64 roundings at the terms' magnitude (the change's first entry is 0,
    # where a relative tolerance allows nothing)
    atol = 4 * np.finfo(np.float64).eps * float(np.max(0.5 + np.abs(c) + np.abs(delta["w"]) / 0.4))
    np.testing.assert_allclose(context.state["scaffold/w"], new, rtol=0, atol=atol)
    np.testing.assert_allclose(change["@scaffold/w"], new - [0.5, 0.5], rtol=0, atol=atol)


def test_config_name_selects_scaffold_around_the_configured_aggregator() -> None:
    strategy = build_strategy(
        StrategyName.SCAFFOLD,
        {"aggregator": "median", "fraction_fit": 0.5},
        ClientConfig(),
        path="strategy",
    )
    assert isinstance(strategy, Algorithm)
    assert strategy.transforms == (ControlVariates(),)
    assert strategy.fraction_fit == 0.5
    assert type(strategy.aggregator).__name__ == "CoordinateMedian"


def test_model_names_with_the_reserved_prefix_are_refused() -> None:
    from fedhive.errors import ConfigError

    app = SimulationApp(
        server=ServerApp(initial_weights=Weights({"@x": np.zeros(DIM)})),
        client=ClientApp(client_fn=QuadraticClient),
        client_ids=["c0"],
    )
    with pytest.raises(ConfigError, match="may not start with"):
        run_simulation(app, strategy=Algorithm(), rounds=1)


def text_control_state() -> bytes:
    """A stored SCAFFOLD state whose c is a string (a corrupted or hand-edited store)."""
    weights = Weights({"w": np.zeros(2)})
    record = record_from_bytes(state_to_bytes(scaffold().initial_state(weights)))
    (key,) = [k for k, v in record.items() if isinstance(v, np.ndarray)]  # c, the one array
    record[key] = "c"
    return record_to_bytes(record)


@pytest.mark.parametrize(
    ("control", "message"),
    [
        (None, r"component 1 holds 'none' state, the algorithm expects 'control_variate'"),
        (np.zeros(5), r"control variate c holds 5 values, the model needs 2"),
    ],
    ids=["missing", "long"],
)
def test_a_state_without_a_variate_of_the_models_size_is_an_error(
    control: Any, message: str
) -> None:
    # Before: a resumed run whose state held no (or a wrong-shaped) c restarted from c = 0
    # without a word.
    weights = Weights({"w": np.zeros(2)})
    strategy = scaffold()
    if control is None:  # FedAvg's state (no control variate) given to SCAFFOLD
        parts = Algorithm().initial_state(weights).parts
        state = StrategyState((parts[0], Stateless(), parts[-1]))
    else:
        state = strategy.initial_state(weights).replace_part(1, Control(control))
    with pytest.raises(StateError, match=message):
        strategy.check_state(state, weights)
    with pytest.raises(StateError, match=message):
        strategy.broadcast(state, weights)
    with pytest.raises(StateError, match=message):
        strategy.aggregate_fit(state, 1, weights, iter([reply("a", 1.0, 2.0)]))


def test_a_stored_variate_that_is_not_a_vector_is_an_error() -> None:
    with pytest.raises(StateError, match=r"control_variate state: c must be a float vector"):
        state_from_bytes(text_control_state())
