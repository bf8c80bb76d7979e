"""FedAdagrad, FedYogi and FedAdam (Reddi et al., ICLR 2021, Alg. 2): their first steps
match a hand-written reference, they reach the optimum of a convex quadratic, they train
a linear model through FedAvg, and their state is pure, serializable and validated."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fedhive.client.app import ClientApp
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.weights import Layout, Weights
from fedhive.errors import ConfigError, ShapeMismatchError, StateError
from fedhive.server.app import ServerApp
from fedhive.simulation.app import SimulationApp
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.optimizers import (
    Moments,
    ServerAdagrad,
    ServerAdam,
    ServerYogi,
)
from fedhive.strategy.registry import StrategyName, build_strategy
from fedhive.strategy.state import StrategyState, state_from_bytes, state_to_bytes

Optimizer = ServerAdagrad | ServerYogi | ServerAdam

LAYOUT = Weights({"w": np.zeros((2, 2)), "b": np.zeros(1)}).layout()  # 5 values
X0 = np.array([0.5, -1.0, 2.0, 0.0, 3.0])
DELTA_1 = np.array([0.5, -1.0, 2.0, 0.0, 1e-4])
DELTA_2 = np.array([-0.25, -1.0, 0.5, 3.0, 2.0])


def floats(value: object) -> npt.NDArray[np.float64]:
    assert isinstance(value, np.ndarray)
    return value.astype(np.float64)


def reference(kind: str, lr: float, b1: float, b2: float, tau: float) -> list[np.ndarray]:
    """Algorithm 2 written out coordinate by coordinate: x after step 1 and step 2."""
    xs: list[np.ndarray] = []
    x, m, v = list(X0), [0.0] * 5, [tau * tau] * 5
    for delta in (DELTA_1, DELTA_2):
        for i, d in enumerate(delta.tolist()):
            m[i] = b1 * m[i] + (1 - b1) * d
            if kind == "adagrad":
                v[i] = v[i] + d * d
            elif kind == "yogi":
                sign = (v[i] > d * d) - (v[i] < d * d)
                v[i] = v[i] - (1 - b2) * d * d * sign
            else:
                v[i] = b2 * v[i] + (1 - b2) * d * d
            x[i] = x[i] + lr * m[i] / (math.sqrt(v[i]) + tau)
        xs.append(np.array(x))
    return xs


@pytest.mark.parametrize(
    ("opt", "kind", "b2"),
    [
        (ServerAdagrad(learning_rate=0.1), "adagrad", 0.0),
        (ServerAdagrad(learning_rate=0.1, beta_1=0.5, tau=0.01), "adagrad", 0.0),
        (ServerYogi(learning_rate=0.1), "yogi", 0.99),
        (ServerYogi(learning_rate=0.05, beta_1=0.5, beta_2=0.9, tau=0.1), "yogi", 0.9),
        (ServerAdam(learning_rate=0.1), "adam", 0.99),
        (ServerAdam(learning_rate=0.05, beta_1=0.0, beta_2=0.5, tau=0.1), "adam", 0.5),
    ],
)
def test_first_two_steps_match_algorithm_2(opt: Optimizer, kind: str, b2: float) -> None:
    expected = reference(kind, opt.learning_rate, opt.beta_1, b2, opt.tau)
    state = opt.init(LAYOUT)
    state, x1 = opt.step(state, X0, DELTA_1)
    state, x2 = opt.step(state, x1, DELTA_2)
    np.testing.assert_allclose(x1, expected[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x2, expected[1], rtol=1e-12, atol=1e-15)
    assert state.step == 2


def test_defaults_and_a_hand_computed_first_adam_step() -> None:
    opt = ServerAdam(learning_rate=1.0)
    assert (opt.beta_1, opt.beta_2, opt.tau) == (0.9, 0.99, 1e-3)
    assert (ServerAdagrad(learning_rate=1.0).beta_1, ServerAdagrad(learning_rate=1.0).tau) == (
        0.0,
        1e-3,
    )
    state = opt.init(Weights({"x": np.zeros(1)}).layout())
    np.testing.assert_array_equal(state.v, [1e-6])  # v_0 = tau^2
    np.testing.assert_array_equal(state.m, [0.0])
    # m = 0.1 * 1; v = 0.99 * 1e-6 + 0.01 * 1 (no bias correction); step = m / (sqrt v + tau)
    _, x = opt.step(state, np.zeros(1), np.ones(1))
    assert x[0] == pytest.approx(0.1 / (math.sqrt(0.01000099) + 0.001), rel=1e-12)


def test_yogi_moves_v_additively_towards_the_squared_update() -> None:
    yogi = ServerYogi(learning_rate=0.1, beta_2=0.9)
    adam = ServerAdam(learning_rate=0.1, beta_2=0.9)
    # v above, below and equal to the squared update (1.0)
    state = Moments(m=np.zeros(3), v=np.array([4.0, 0.25, 1.0]), step=0)
    new, _ = yogi.step(state, np.zeros(3), np.ones(3))
    np.testing.assert_allclose(floats(new.v), [4.0 - 0.1, 0.25 + 0.1, 1.0], rtol=1e-15)
    # Adam moves the same v multiplicatively: further down from 4, less far up from 0.25
    adam_new, _ = adam.step(state, np.zeros(3), np.ones(3))
    np.testing.assert_allclose(floats(adam_new.v), [3.7, 0.325, 1.0], rtol=1e-15)
    # a negative update squares to the same value: the sign is that of v - Δ², not of Δ
    negative, _ = yogi.step(state, np.zeros(3), -np.ones(3))
    np.testing.assert_array_equal(negative.v, new.v)


# --- convergence on a convex quadratic ---------------------------------------------------

A = np.array([[2.0, 0.3, 0.0], [0.1, 1.5, -0.2], [0.0, 0.4, 1.0], [0.5, 0.0, 0.3]])
B = np.array([1.0, -2.0, 0.5, 3.0])


# Learning rates found by a sweep over {1e-3, 3e-3, ..., 1} (500 steps, default betas and
# tau): Adagrad reaches 1e-2 for 0.1..1, Yogi for 0.01..1, Adam for 0.01..0.3.
@pytest.mark.parametrize(
    "opt",
    [
        ServerAdagrad(learning_rate=0.3),
        ServerYogi(learning_rate=0.1),
        ServerAdam(learning_rate=0.1),
    ],
    ids=["adagrad", "yogi", "adam"],
)
def test_reaches_the_optimum_of_a_least_squares_problem(opt: Optimizer) -> None:
    x_star = np.linalg.lstsq(A, B, rcond=None)[0]
    layout = Weights({"x": np.zeros(3)}).layout()
    state, x = opt.init(layout), np.zeros(3)
    start = np.linalg.norm(x - x_star)
    for _ in range(500):
        # each round, "clients" return the negative gradient of f(x) = 1/2 |Ax - b|^2
        state, x = opt.step(state, x, -(A.T @ (A @ x - B)))
    assert start > 1.0
    assert np.linalg.norm(x - x_star) < 1e-2
    assert state.step == 500


# --- end to end through FedAvg -----------------------------------------------------------

TRUE_W = np.array([1.5, -2.0, 0.5])
TRUE_B = 0.7


def make_data(index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + index)
    x = rng.normal(loc=index - 1.5, scale=1.0, size=(40, 3))  # a different mean per client
    return x, x @ TRUE_W + TRUE_B + 0.01 * rng.normal(size=40)


def mse(weights: Weights, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((x @ weights["w"] + weights["b"][0] - y) ** 2))


class LinearClient:
    """Full-batch gradient descent on its own data, ``local_epochs`` steps per round."""

    def __init__(self, client_id: str) -> None:
        self.x, self.y = make_data(int(client_id.removeprefix("c")))

    def fit(self, weights: Weights, config: ClientConfig, context: Any) -> FitResult:
        w, b = weights["w"].astype(np.float64), weights["b"].astype(np.float64)
        for _ in range(config.local_epochs):
            residual = self.x @ w + b[0] - self.y
            w -= config.learning_rate * 2 * self.x.T @ residual / len(self.y)
            b -= config.learning_rate * 2 * residual.mean()
        return FitResult(weights=Weights({"w": w, "b": b}), num_examples=len(self.y))

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=mse(weights, self.x, self.y), num_examples=len(self.y))


def test_fedadam_trains_a_linear_model_through_fedavg() -> None:
    clients = [f"c{i}" for i in range(4)]
    pooled = [make_data(i) for i in range(4)]
    x_all = np.concatenate([x for x, _ in pooled])
    y_all = np.concatenate([y for _, y in pooled])
    initial = Weights({"w": np.zeros(3), "b": np.zeros(1)})
    app = SimulationApp(
        server=ServerApp(
            initial_weights=initial, evaluate_fn=lambda w: {"loss": mse(w, x_all, y_all)}
        ),
        client=ClientApp(client_fn=LinearClient),
        client_ids=clients,
    )
    # Server rate 0.03: monotone here for 40 rounds; 0.1 overshoots (beta_1 = 0.9 momentum)
    # and the loss rises again for a while before it falls.
    strategy = Algorithm(
        server_optimizer=ServerAdam(learning_rate=0.03),
        client_config=ClientConfig(learning_rate=0.02, local_epochs=5),
    )
    result = run_simulation(app, strategy=strategy, rounds=40, seed=3)
    losses = [mse(initial, x_all, y_all)] + [r.centralized["loss"] for r in result.history]
    assert all(r.committed for r in result.history)
    assert all(later < earlier for earlier, later in itertools.pairwise(losses))
    assert losses[-1] < 0.01 * losses[0]
    assert result.state.of(Moments).step == 40
    np.testing.assert_allclose(floats(result.weights["w"]), TRUE_W, atol=0.2)


# --- state: serialization, purity, validation --------------------------------------------

ALL = [
    ServerAdagrad(learning_rate=0.1, beta_1=0.3),
    ServerYogi(learning_rate=0.1),
    ServerAdam(learning_rate=0.1),
]


@pytest.mark.parametrize("opt", ALL, ids=["adagrad", "yogi", "adam"])
def test_state_round_trips_through_state_bytes(opt: Optimizer) -> None:
    state = opt.init(LAYOUT)
    state, x = opt.step(state, X0, DELTA_1)
    (restored,) = state_from_bytes(state_to_bytes(StrategyState((state,)))).parts
    assert isinstance(restored, Moments)
    assert set(restored.fields()) == {"m", "v", "step"}
    assert restored.step == 1
    for name in ("m", "v"):
        array = getattr(restored, name)
        assert isinstance(array, np.ndarray)
        assert array.dtype == np.float64
        assert array.shape == (LAYOUT.total_size,)
        np.testing.assert_array_equal(array, getattr(state, name))
    # resuming from the restored state gives exactly the same next step
    after, x_after = opt.step(state, x, DELTA_2)
    after_restored, x_restored = opt.step(restored, x, DELTA_2)
    np.testing.assert_array_equal(x_after, x_restored)
    np.testing.assert_array_equal(after.v, after_restored.v)


@pytest.mark.parametrize("opt", ALL, ids=["adagrad", "yogi", "adam"])
def test_step_is_pure(opt: Optimizer) -> None:
    state, _ = opt.step(opt.init(LAYOUT), X0, DELTA_1)
    copies = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.fields().items()}
    weights, update = X0.copy(), DELTA_2.copy()
    for array in (weights, update, state.m, state.v):
        assert isinstance(array, np.ndarray)
        array.setflags(write=False)  # any in-place write would raise
    first = opt.step(state, weights, update)
    second = opt.step(state, weights, update)
    np.testing.assert_array_equal(weights, X0)
    np.testing.assert_array_equal(update, DELTA_2)
    assert set(state.fields()) == set(copies)
    for key, value in copies.items():
        np.testing.assert_array_equal(state.fields()[key], value)
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0].step == second[0].step == 2


def test_state_for_another_model_is_refused() -> None:
    opt = ServerAdam(learning_rate=0.1)
    state = opt.init(Layout(("x",), ((3,),), (np.dtype(np.float64),)))
    with pytest.raises(
        ShapeMismatchError, match=r"moments of shape \(3,\) and \(3,\), weights \(5,\)"
    ):
        opt.step(state, X0, DELTA_1)
    with pytest.raises(StateError, match=r"first moment holds 3 values, the model needs 5"):
        opt.check(state, LAYOUT)
    short_v = Moments(m=np.zeros(5), v=np.ones(3), step=0)
    with pytest.raises(
        ShapeMismatchError, match=r"moments of shape \(5,\) and \(3,\), weights \(5,\)"
    ):
        opt.step(short_v, X0, DELTA_1)
    with pytest.raises(StateError, match=r"second moment holds 3 values, the model needs 5"):
        opt.check(short_v, LAYOUT)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (ServerAdagrad, {"learning_rate": 0.0}, "learning_rate"),
        (ServerYogi, {"learning_rate": -0.1}, "learning_rate"),
        (ServerAdam, {"learning_rate": float("nan")}, "learning_rate"),
        (ServerAdam, {"learning_rate": float("inf")}, "learning_rate"),
        (ServerAdagrad, {"learning_rate": True}, "learning_rate"),
        (ServerAdagrad, {"learning_rate": 0.1, "beta_1": 1.0}, "beta_1"),
        (ServerYogi, {"learning_rate": 0.1, "beta_1": -0.1}, "beta_1"),
        (ServerYogi, {"learning_rate": 0.1, "beta_2": 1.0}, "beta_2"),
        (ServerAdam, {"learning_rate": 0.1, "beta_2": 1.5}, "beta_2"),
        (ServerAdagrad, {"learning_rate": 0.1, "tau": 0.0}, "tau"),
        (ServerAdam, {"learning_rate": 0.1, "tau": -1e-3}, "tau"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(
    cls: type[Optimizer], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: must be"):
        cls(**kwargs)


def test_config_tables_map_onto_the_optimizers() -> None:
    built = build_strategy(StrategyName.FEDYOGI, {"server_learning_rate": 1, "tau": 0.01})
    assert built.server_optimizer == ServerYogi(learning_rate=1.0, tau=0.01)
    with pytest.raises(ConfigError, match=r"^strategy\.beta_2: must be in \[0, 1\)"):
        build_strategy(StrategyName.FEDADAM, {"beta_2": 1.0})
