"""A Flower NumPyClient runs unchanged under fedhive and matches a native client exactly."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

from fedhive.client.base import Client, Context
from fedhive.client.flower import FlowerClient, flower_config, initial_weights
from fedhive.core import ClientConfig, DpSgd, PartialWork, Proximal, Weights, run_stream
from fedhive.errors import ClientError, ConfigError
from fedhive.simulation.app import AppContext
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm
from flower_logreg import LogRegNumPyClient, build, native_client

CONFIG = ClientConfig(local_epochs=2, batch_size=8, learning_rate=0.2, extra={"mode": "fast"})
STRATEGY = Algorithm(fraction_fit=0.75, fraction_evaluate=1.0, client_config=CONFIG)
ZEROS = Weights({"w": np.zeros((5, 3), np.float32), "b": np.zeros(3, np.float32)})


def ctx(client: str = "c1", round_: int = 4) -> Context:
    return Context(client_id=client, round=round_, seed=run_stream(9).child(client))


def simulate(flavour: str, rounds: int = 3) -> Any:
    app = build(AppContext(params={"flavour": flavour}, seed=5))
    return run_simulation(app, strategy=STRATEGY, rounds=rounds, seed=5, federated_every=1)


def test_a_flower_federation_ends_on_the_native_clients_model_bit_for_bit() -> None:
    flower, native = simulate("flower"), simulate("native")
    assert flower.version == native.version
    assert flower.weights.keys() == native.weights.keys() == {"w", "b"}
    for name in ("w", "b"):
        np.testing.assert_array_equal(flower.weights[name], native.weights[name])
        assert flower.weights[name].dtype == np.float32
    assert not np.array_equal(flower.weights["w"], ZEROS["w"])
    for ours, theirs in zip(flower.history, native.history, strict=True):
        assert ours.committed
        assert (ours.fit.succeeded, ours.fit.failed) == (3, 0)
        assert ours.federated == theirs.federated
        assert ours.train == theirs.train
    assert flower.history[-1].federated["accuracy"] > 0.7
    assert flower.history[-1].federated["loss"] < flower.history[0].federated["loss"]


def test_the_config_dict_carries_the_round_the_seed_and_the_extras() -> None:
    seen: list[dict[str, Any]] = []

    class Recorder(LogRegNumPyClient):
        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            seen.append(dict(config))
            return super().fit(parameters, config)

    context = ctx()
    FlowerClient(Recorder("c1")).fit(ZEROS, CONFIG.with_extensions(Proximal(mu=0.5)), context)
    assert seen == [
        {
            "local_epochs": 2,
            "batch_size": 8,
            "learning_rate": 0.2,
            "server_round": 4,
            "client_id": "c1",
            "seed": context.seed.torch_seed,
            "proximal_mu": 0.5,
            "mode": "fast",
        }
    ]
    assert "proximal_mu" not in flower_config(CONFIG, context)


@pytest.mark.parametrize(
    "extension", [DpSgd(noise_multiplier=1.0, max_grad_norm=1.0), PartialWork(max_local_steps=2)]
)
def test_instructions_a_numpy_client_cannot_follow_are_refused(extension: Any) -> None:
    client, config = FlowerClient(LogRegNumPyClient("c1")), CONFIG.with_extensions(extension)
    with pytest.raises(ClientError, match=type(extension).__name__):
        client.fit(ZEROS, config, ctx())
    assert client.evaluate(ZEROS, config, ctx()).num_examples == 10  # evaluation is unaffected
    context = ctx()
    context.aux = Weights({f"@scaffold/{k}": np.zeros_like(v) for k, v in ZEROS.items()})
    with pytest.raises(ClientError, match="SCAFFOLD"):
        FlowerClient(LogRegNumPyClient("c1")).fit(ZEROS, CONFIG, context)


def test_results_are_named_by_order_cast_to_the_models_dtypes_and_numbers_kept() -> None:
    class Float64(LogRegNumPyClient):
        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            metrics = {"a": 1, "s": "x", "t": True}
            return [p.astype(np.float64) + 1.0 for p in parameters], 7, metrics

    result = FlowerClient(Float64("c1")).fit(ZEROS, CONFIG, ctx())
    assert result.weights is not None
    assert list(result.weights) == ["w", "b"]
    assert result.weights["w"].dtype == np.float32
    assert float(result.weights["b"][0]) == 1.0
    assert result.num_examples == 7
    assert result.metrics == {"a": 1.0}
    evaluated = FlowerClient(LogRegNumPyClient("c1")).evaluate(ZEROS, CONFIG, ctx())
    assert evaluated.num_examples == 10
    assert evaluated.loss == pytest.approx(np.log(3))
    assert set(evaluated.metrics) == {"accuracy"}


@pytest.mark.parametrize(
    ("returned", "match"),
    [
        (([np.zeros(3)], 5, {}), "1 arrays for a model of 2"),
        (([np.zeros((5, 3)), np.zeros(3)], -1, {}), "num_examples"),
        (([np.zeros((5, 3)), np.zeros(3)], 5), r"\(parameters, num_examples, metrics\)"),
        (("ab", 5, {}), "not a list"),
        (([np.zeros((5, 3)), np.zeros(3)], 5, [1]), "metrics"),
    ],
)
def test_a_malformed_fit_result_is_a_client_error(returned: Any, match: str) -> None:
    class Bad:
        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            return returned

    with pytest.raises(ClientError, match=match):
        FlowerClient(Bad()).fit(ZEROS, CONFIG, ctx())


def test_what_is_not_a_numpy_client_is_a_config_error_and_evaluate_is_optional() -> None:
    with pytest.raises(ConfigError, match="NumPyClient"):
        FlowerClient(object())

    class FitOnly:
        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            return parameters, 0, {}

    client = FlowerClient(FitOnly())
    assert isinstance(client, Client)
    assert client.evaluate(ZEROS, CONFIG, ctx()).num_examples == 0
    assert client.fit(ZEROS, CONFIG, ctx()).weights is ZEROS  # 0 examples: no update
    with pytest.raises(ConfigError, match="get_parameters"):
        initial_weights(FitOnly())
    assert list(initial_weights(LogRegNumPyClient("c0"))) == ["p0000", "p0001"]


def test_one_fit_matches_the_native_client() -> None:
    flower = FlowerClient(LogRegNumPyClient("c2")).fit(ZEROS, CONFIG, ctx("c2"))
    native = native_client("c2").fit(ZEROS, CONFIG, ctx("c2"))
    assert flower.weights is not None
    assert native.weights is not None
    for name in ("w", "b"):
        np.testing.assert_array_equal(flower.weights[name], native.weights[name])


def _real_numpy_client() -> Any:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    with warnings.catch_warnings():
        # flwr 1.42 imports typer, which warns on click 8.2+'s deprecations.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from flwr.client import NumPyClient
        except ImportError as exc:
            pytest.skip(f"flwr is not importable here ({exc}); the duck-typed tests cover it")
    return NumPyClient


def test_a_real_flwr_numpy_client_and_its_to_client_run_unchanged() -> None:
    base = _real_numpy_client()

    class Real(base):  # type: ignore[misc, valid-type]
        def __init__(self, client_id: str) -> None:
            self.inner = LogRegNumPyClient(client_id)

        def get_parameters(self, config: dict[str, Any]) -> list[Any]:
            return self.inner.get_parameters(config)

        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            return self.inner.fit(parameters, config)

        def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            return self.inner.evaluate(parameters, config)

    native = native_client("c3").fit(ZEROS, CONFIG, ctx("c3"))
    assert native.weights is not None
    for wrapped in (Real("c3"), Real("c3").to_client()):
        result = FlowerClient(wrapped).fit(ZEROS, CONFIG, ctx("c3"))
        assert result.weights is not None
        for name in ("w", "b"):
            np.testing.assert_array_equal(result.weights[name], native.weights[name])
    assert list(initial_weights(Real("c3").to_client(), names=["w", "b"])) == ["w", "b"]
