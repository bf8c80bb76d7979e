"""FedAvg: the example-weighted mean of client models, stepped with the server learning
rate, independent of arrival order; its config and its registry entry."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedhive.core.messages import ClientConfig, EvaluateReply, FitReply
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError, NotEnoughClientsError
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.base import Instruction
from fedhive.strategy.registry import StrategyName, build_strategy
from fedhive.strategy.sampling import sample_clients
from fedhive.strategy.state import Stateless, StrategyState

SHAPES = {"w": (3, 2), "b": (2,)}
STATE = StrategyState((Stateless(), Stateless()))
"""FedAvg's state: server SGD's and the synchronous schedule's, both stateless."""


def global_model() -> Weights:
    return Weights(
        {
            "w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
            "b": np.array([0.25, -0.5], np.float32),
        }
    )


def reply(
    client: str, update: Weights, n: int, metrics: dict[str, float] | None = None
) -> FitReply:
    return FitReply(
        client_id=client, round=1, version="v", update=update, num_examples=n, metrics=metrics or {}
    )


def delta(client_model: Weights, base: Weights) -> Weights:
    """What a client sends: its model minus the global one (in the model's dtype)."""
    return Weights({k: client_model[k] - base[k] for k in base})


float32_models = st.fixed_dictionaries(
    {
        name: hnp.arrays(
            np.float32, shape, elements=st.floats(-100, 100, width=32, allow_nan=False)
        )
        for name, shape in SHAPES.items()
    }
).map(lambda arrays: Weights({k: arrays[k] for k in SHAPES}))
clients_models = st.lists(st.tuples(float32_models, st.integers(1, 500)), min_size=1, max_size=8)


# --- aggregate_fit ----------------------------------------------------------------------


@settings(deadline=None)
@given(clients_models)
def test_rate_one_gives_the_weighted_mean_of_client_models(
    models: list[tuple[Weights, int]],
) -> None:
    base = global_model()
    replies = [reply(f"c{i}", delta(m, base), n) for i, (m, n) in enumerate(models)]
    state, new, _ = Algorithm().aggregate_fit(STATE, 1, base, iter(replies))
    assert state == STATE
    assert list(new) == list(base)
    total = sum(n for _, n in models)
    for name in base:
        assert new[name].dtype == np.float32
        assert new[name].shape == base[name].shape
        # exact: global + sum n_k * delta_k / N, with the float32 deltas the clients sent
        for idx in np.ndindex(base[name].shape):
            exact = Fraction(float(base[name][idx])) + sum(
                (Fraction(float(r.update[name][idx])) * r.num_examples for r in replies),
                Fraction(0),
            ) / Fraction(total)
            # one float32 ulp of the result, plus float64 rounding at the inputs' scale
            # (the step is computed in float64; under cancellation that residue remains)
            scale = abs(float(base[name][idx])) + max(
                abs(float(r.update[name][idx])) for r in replies
            )
            ulp = Fraction(float(np.spacing(np.float32(abs(float(exact))))))
            tol = ulp + Fraction(1e-15) * Fraction(scale)
            assert abs(Fraction(float(new[name][idx])) - exact) <= tol
        # and that is the weighted mean of the client models (up to float32 deltas)
        mean = np.average(
            np.stack([m[name].astype(np.float64) for m, _ in models]),
            axis=0,
            weights=[n for _, n in models],
        )
        np.testing.assert_allclose(new[name], mean, rtol=0, atol=1e-4)


@settings(deadline=None)
@given(clients_models)
def test_float64_model_step_matches_batch_weighted_mean(
    models: list[tuple[Weights, int]],
) -> None:
    # float64 global model, float32-valued deltas: the streamed step is the batch mean
    base = Weights({k: v.astype(np.float64) for k, v in global_model().items()})
    replies = [
        reply(f"c{i}", Weights({k: v.astype(np.float64) for k, v in m.items()}), n)
        for i, (m, n) in enumerate(models)
    ]
    _, new, _ = Algorithm().aggregate_fit(STATE, 1, base, replies)
    for name in base:
        updates = np.stack([r.update[name] for r in replies])
        batch = base[name] + np.average(updates, axis=0, weights=[n for _, n in models])
        scale = max(1.0, float(np.abs(updates).max()))
        np.testing.assert_allclose(new[name], batch, rtol=0, atol=1e-12 * scale)


def test_weighted_mean_small_exact_case() -> None:
    base = Weights({"x": np.array([1.0, 2.0], np.float32)})
    models = [np.array([2.0, 0.0], np.float32), np.array([4.0, 8.0], np.float32)]
    replies = [
        reply("a", Weights({"x": models[0] - base["x"]}), 1),
        reply("b", Weights({"x": models[1] - base["x"]}), 3),
    ]
    _, new, _ = Algorithm().aggregate_fit(STATE, 1, base, replies)
    np.testing.assert_array_equal(new["x"], [3.5, 6.0])  # (2 + 3*4)/4, (0 + 3*8)/4


def test_server_learning_rate_half_halves_the_step() -> None:
    base = Weights({"x": np.array([1.0, -2.0, 0.5], np.float64)})
    replies = [
        reply("a", Weights({"x": np.array([0.3, 1.25, -4.0])}), 7),
        reply("b", Weights({"x": np.array([-0.1, 0.75, 2.0])}), 5),
    ]
    _, full, _ = Algorithm().aggregate_fit(STATE, 1, base, replies)
    _, half, _ = Algorithm(server_learning_rate=0.5).aggregate_fit(STATE, 1, base, replies)
    full_step = full["x"] - base["x"]
    half_step = half["x"] - base["x"]
    np.testing.assert_allclose(half_step, 0.5 * full_step, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        full_step,
        (7 * replies[0].update["x"] + 5 * replies[1].update["x"]) / 12,
        rtol=0,
        atol=1e-12,
    )


def test_integer_tensors_get_the_rounded_mean_step() -> None:
    base = Weights({"steps": np.array([10, 0], np.int64)})
    replies = [
        reply("a", Weights({"steps": np.array([1, 3], np.int64)}), 1),
        reply("b", Weights({"steps": np.array([4, 3], np.int64)}), 2),
    ]
    _, new, _ = Algorithm().aggregate_fit(STATE, 1, base, replies)
    assert new["steps"].dtype == np.int64
    np.testing.assert_array_equal(new["steps"], [13, 3])


@settings(deadline=None, max_examples=50)
@given(clients_models, st.data())
def test_result_is_bit_identical_under_any_arrival_order(
    models: list[tuple[Weights, int]], data: st.DataObject
) -> None:
    base = global_model()
    replies = [
        reply(f"c{i}", delta(m, base), n, {"acc": float(i) / 7}) for i, (m, n) in enumerate(models)
    ]
    shuffled = data.draw(st.permutations(replies))
    _, first, metrics_first = Algorithm().aggregate_fit(STATE, 1, base, replies)
    _, second, metrics_second = Algorithm().aggregate_fit(STATE, 1, base, shuffled)
    for name in base:
        assert first[name].tobytes() == second[name].tobytes()
    assert metrics_first == metrics_second


def test_fit_metrics_are_example_weighted() -> None:
    base = global_model()
    zero = Weights({k: np.zeros_like(v) for k, v in base.items()})
    replies = [reply("a", zero, 10, {"acc": 0.5}), reply("b", zero, 30, {"acc": 0.9, "x": 1})]
    _, _, metrics = Algorithm().aggregate_fit(STATE, 1, base, replies)
    assert metrics == {"acc": pytest.approx(0.8, abs=1e-15), "x": 1.0}


def test_too_few_replies_raise_with_round_and_stage() -> None:
    base = global_model()
    zero = Weights({k: np.zeros_like(v) for k, v in base.items()})
    strategy = Algorithm(min_fit_clients=3)
    with pytest.raises(NotEnoughClientsError) as info:
        strategy.aggregate_fit(STATE, 4, base, [reply("a", zero, 1), reply("b", zero, 1)])
    assert info.value.round == 4
    assert info.value.stage == "aggregate"
    assert "2 clients succeeded, min_fit_clients is 3" in str(info.value)


def test_no_replies_raise() -> None:
    with pytest.raises(NotEnoughClientsError):
        Algorithm().aggregate_fit(STATE, 1, global_model(), [])


def test_zero_total_examples_keeps_the_weights() -> None:
    base = global_model()
    big = Weights({k: np.full_like(v, 50.0) for k, v in base.items()})
    state = StrategyState((Stateless(), Stateless()))
    out_state, new, metrics = Algorithm().aggregate_fit(
        state, 1, base, [reply("a", big, 0, {"acc": 1.0}), reply("b", big, 0)]
    )
    assert out_state == state
    for name in base:
        np.testing.assert_array_equal(new[name], base[name])
    assert metrics == {}


def test_replies_are_streamed_once() -> None:
    base = global_model()
    zero = Weights({k: np.zeros_like(v) for k, v in base.items()})
    seen: list[str] = []

    def stream() -> Iterator[FitReply]:
        for cid in ("a", "b", "c"):
            seen.append(cid)
            yield reply(cid, zero, 1)

    Algorithm(min_fit_clients=3).aggregate_fit(STATE, 1, base, stream())
    assert seen == ["a", "b", "c"]


# --- configure --------------------------------------------------------------------------


def ids(n: int) -> list[str]:
    return [f"c{i:02d}" for i in range(n)]


def test_configure_fit_samples_and_hands_out_the_client_config() -> None:
    config = ClientConfig(local_epochs=3, learning_rate=0.5)
    strategy = Algorithm(fraction_fit=0.25, client_config=config)
    chosen = strategy.configure_fit(STATE, 1, global_model(), ids(20), np.random.default_rng(3))
    assert len(chosen) == 5
    assert all(isinstance(i, Instruction) and i.config == config for i in chosen)
    names = [i.client_id for i in chosen]
    assert names == sorted(set(names))
    again = strategy.configure_fit(STATE, 1, global_model(), ids(20), np.random.default_rng(3))
    assert again == chosen


def test_configure_fit_needs_min_available_clients() -> None:
    strategy = Algorithm(min_available_clients=5)
    with pytest.raises(NotEnoughClientsError):
        strategy.configure_fit(STATE, 1, global_model(), ids(4), np.random.default_rng(0))


def test_configure_evaluate_is_empty_when_fraction_is_zero() -> None:
    rng = np.random.default_rng(0)
    assert Algorithm().configure_evaluate(STATE, 1, global_model(), ids(10), rng) == []
    chosen = Algorithm(fraction_evaluate=0.5, min_evaluate_clients=7).configure_evaluate(
        STATE, 1, global_model(), ids(10), rng
    )
    assert len(chosen) == 7


def test_aggregate_evaluate_weights_loss_and_metrics_by_examples() -> None:
    replies = [
        EvaluateReply(client_id="a", round=2, loss=1.0, num_examples=1, metrics={"acc": 0.0}),
        EvaluateReply(client_id="b", round=2, loss=3.0, num_examples=3, metrics={"acc": 1.0}),
    ]
    state, metrics = Algorithm().aggregate_evaluate(STATE, 2, replies)
    assert state == STATE
    assert metrics == {"acc": 0.75, "loss": 2.5}


# --- config validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fraction_fit": 0.0}, "fraction_fit"),
        ({"fraction_fit": 1.5}, "fraction_fit"),
        ({"fraction_fit": -0.1}, "fraction_fit"),
        ({"fraction_fit": float("nan")}, "fraction_fit"),
        ({"fraction_evaluate": -0.1}, "fraction_evaluate"),
        ({"fraction_evaluate": 1.01}, "fraction_evaluate"),
        ({"min_fit_clients": 0}, "min_fit_clients"),
        ({"min_evaluate_clients": True}, "min_evaluate_clients"),
        ({"min_available_clients": 2.0}, "min_available_clients"),
        ({"server_learning_rate": 0.0}, "server_learning_rate"),
        ({"server_learning_rate": -1.0}, "server_learning_rate"),
        ({"server_learning_rate": float("nan")}, "server_learning_rate"),
    ],
)
def test_bad_config_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: must be"):
        Algorithm(**kwargs)  # type: ignore[arg-type]


def test_fraction_fit_error_message() -> None:
    with pytest.raises(ValueError, match=r"^fraction_fit: must be in \(0, 1\], got 1.5$"):
        Algorithm(fraction_fit=1.5)


def test_boundary_values_are_accepted() -> None:
    Algorithm(fraction_fit=1.0, fraction_evaluate=0.0)
    Algorithm(fraction_fit=1e-9, fraction_evaluate=1.0, server_learning_rate=1e-9)


# --- registry ---------------------------------------------------------------------------


def test_build_strategy_uses_the_table_and_the_client_config() -> None:
    client = ClientConfig(batch_size=8)
    strategy = build_strategy(
        StrategyName.FEDAVG, {"fraction_fit": 0.5, "min_fit_clients": 2}, client, path="strategy"
    )
    assert strategy == Algorithm(fraction_fit=0.5, min_fit_clients=2, client_config=client)


def test_build_strategy_rejects_client_config_in_the_table() -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.client_config: .*\[client\]"):
        build_strategy(
            StrategyName.FEDAVG,
            {"client_config": {"batch_size": 2}},
            ClientConfig(),
            path="strategy",
        )


def test_build_strategy_errors_name_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.fraction_fit: must be in \(0, 1\]"):
        build_strategy(StrategyName.FEDAVG, {"fraction_fit": 0}, ClientConfig(), path="strategy")
    with pytest.raises(ConfigError, match=r"^strategy\.lr: unknown key; allowed: .*fraction_fit"):
        build_strategy(StrategyName.FEDAVG, {"lr": 0.1}, ClientConfig(), path="strategy")


def test_strategy_names_parse_from_config_strings() -> None:
    assert StrategyName("fedavg") is StrategyName.FEDAVG
    assert str(StrategyName.FEDAVG) == "fedavg"


class FirstClients:
    """A sampler that takes the lowest ids: a stand-in for availability-aware sampling."""

    def sample(
        self,
        clients: list[str],
        *,
        fraction: float,
        min_clients: int,
        min_available: int,
        rng: np.random.Generator,
    ) -> list[str]:
        count = max(min_clients, round(fraction * len(clients)))
        return sorted(clients)[:count]


def test_the_sampler_part_chooses_the_clients_for_fit_and_evaluation() -> None:
    strategy = Algorithm(fraction_fit=0.3, fraction_evaluate=0.2, sampler=FirstClients())
    rng = np.random.default_rng(0)
    fit = strategy.configure_fit(STATE, 1, global_model(), ids(10), rng)
    evaluate = strategy.configure_evaluate(STATE, 1, global_model(), ids(10), rng)
    assert [i.client_id for i in fit] == sorted(ids(10))[:3]
    assert [i.client_id for i in evaluate] == sorted(ids(10))[:2]


def test_the_default_sampler_is_uniform_sampling() -> None:
    strategy = Algorithm(fraction_fit=0.3)
    chosen = strategy.configure_fit(STATE, 1, global_model(), ids(20), np.random.default_rng(3))
    expected = sample_clients(
        ids(20), fraction=0.3, min_clients=1, min_available=1, rng=np.random.default_rng(3)
    )
    assert [i.client_id for i in chosen] == expected
