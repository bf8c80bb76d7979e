"""Messages validate what they can at construction and refuse with typed errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    MAX_METRIC_KEY,
    MAX_METRICS,
    ClientConfig,
    EvaluateTask,
    Failure,
    FitResult,
    FitTask,
    PrivacyBudget,
    check_metrics,
)
from fedhive.core.weights import Weights
from fedhive.errors import ClientError, ConfigError

# --- PrivacyBudget ----------------------------------------------------------------------


def test_valid_budget() -> None:
    budget = PrivacyBudget(epsilon_max=8.0, delta=1e-5)
    assert (budget.epsilon_max, budget.delta) == (8.0, 1e-5)


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.nan, -math.inf])
def test_budget_epsilon_must_be_positive(epsilon: float) -> None:
    with pytest.raises(ConfigError, match=r"^epsilon_max: must be a finite number > 0"):
        PrivacyBudget(epsilon_max=epsilon, delta=1e-5)


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_budget_delta_must_be_in_open_unit_interval(delta: float) -> None:
    with pytest.raises(ConfigError, match=r"^delta: must be in \(0, 1\)"):
        PrivacyBudget(epsilon_max=1.0, delta=delta)


def test_budget_non_number_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="epsilon_max"):
        PrivacyBudget(epsilon_max="8", delta=1e-5)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["min_noise_multiplier", "clipping_norm"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan, "2"])
def test_the_devices_own_noise_settings_must_be_positive(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: must be a finite number > 0"):
        PrivacyBudget(epsilon_max=1.0, delta=1e-5, **{field: value})  # type: ignore[arg-type]
    assert getattr(PrivacyBudget(epsilon_max=1.0, delta=1e-5), field) is None


def test_budget_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        PrivacyBudget(1.0, 1e-5)  # type: ignore[misc]


# --- ClientConfig -----------------------------------------------------------------------


def test_client_config_defaults() -> None:
    config = ClientConfig()
    assert (config.local_epochs, config.batch_size, config.learning_rate) == (1, 32, 0.01)
    assert config.privacy_budget is None
    assert dict(config.extra) == {}


@pytest.mark.parametrize("field", ["local_epochs", "batch_size"])
@pytest.mark.parametrize("value", [0, -3, 1.5, 2.0, True, "2", None])
def test_counts_must_be_integers_at_least_one(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: must be an integer >= 1"):
        ClientConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (0, "must be a finite number > 0"),
        (-0.1, "must be a finite number > 0"),
        (math.nan, "must be a finite number > 0"),
        ("0.1", "must be a finite number > 0"),
        (None, "must be a finite number > 0"),
        (math.inf, "must be a finite number > 0"),
    ],
)
def test_learning_rate_must_be_positive_and_finite(value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=rf"^learning_rate: {match}"):
        ClientConfig(learning_rate=value)  # type: ignore[arg-type]


def test_learning_rate_bool_is_refused() -> None:
    with pytest.raises(ConfigError, match="learning_rate"):
        ClientConfig(learning_rate=True)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ClientConfig(batch_size=0)


def test_int_learning_rate_and_budget_are_accepted() -> None:
    budget = PrivacyBudget(epsilon_max=3, delta=0.5)
    config = ClientConfig(local_epochs=3, batch_size=1, learning_rate=1, privacy_budget=budget)
    assert config.privacy_budget == budget


def test_client_config_is_frozen_and_comparable() -> None:
    config = ClientConfig(extra={"mu": 0.1})
    assert config == ClientConfig(extra={"mu": 0.1})
    assert config != ClientConfig(extra={"mu": 0.2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 1  # type: ignore[misc]


# --- FitResult --------------------------------------------------------------------------

W = Weights({"a": np.zeros(2, np.float32)})


def test_fit_result_takes_weights_or_delta() -> None:
    assert FitResult(num_examples=3, weights=W).delta is None
    assert FitResult(num_examples=0, delta=W).weights is None


def test_fit_result_needs_exactly_one_of_weights_and_delta() -> None:
    with pytest.raises(ClientError, match="exactly one"):
        FitResult(num_examples=1)
    with pytest.raises(ClientError, match="exactly one"):
        FitResult(num_examples=1, weights=W, delta=W)


@pytest.mark.parametrize("value", [True, 1.0, "3", None, np.float64(2.0)])
def test_fit_result_num_examples_must_be_an_int(value: object) -> None:
    with pytest.raises(ClientError, match="num_examples must be an int"):
        FitResult(num_examples=value, weights=W)  # type: ignore[arg-type]


def test_fit_result_num_examples_must_not_be_negative() -> None:
    with pytest.raises(ClientError, match="must be >= 0"):
        FitResult(num_examples=-1, weights=W)


# --- check_metrics ----------------------------------------------------------------------


def test_metrics_become_plain_floats() -> None:
    out = check_metrics({"acc": 1, "loss": np.float32(0.5), "n": np.int64(4), "f": 0.25})
    assert out == {"acc": 1.0, "loss": 0.5, "n": 4.0, "f": 0.25}
    assert all(type(v) is float for v in out.values())


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=MAX_METRIC_KEY),
        st.floats(allow_nan=False, allow_infinity=False),
        max_size=MAX_METRICS,
    )
)
def test_finite_metrics_pass_unchanged(metrics: dict[str, float]) -> None:
    assert check_metrics(metrics) == metrics


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_non_finite_metrics_are_refused_naming_the_key(value: float) -> None:
    with pytest.raises(ClientError, match=r"metrics\['acc'\] is not finite"):
        check_metrics({"ok": 1.0, "acc": value})


@pytest.mark.parametrize("value", [None, [1.0], "abc", object(), 1j])
def test_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(ClientError, match=r"eval\['m'\] is not a number"):
        check_metrics({"m": value}, what="eval")


@pytest.mark.parametrize("value", ["0.5", "nan", True, False, b"1"])
def test_strings_bools_and_bytes_are_not_numbers(value: object) -> None:
    with pytest.raises(ClientError, match=r"metrics\['m'\] is not a number"):
        check_metrics({"m": value})


@pytest.mark.parametrize("key", ["", 3, None])
def test_metric_keys_must_be_non_empty_strings(key: object) -> None:
    with pytest.raises(ClientError, match="keys must be non-empty strings"):
        check_metrics({key: 1.0})


# --- tasks and failures -----------------------------------------------------------------


def test_tasks_are_frozen_keyword_only_values() -> None:
    task = FitTask(round=1, client_id="c", version="v", seed=5, config=ClientConfig())
    assert task == FitTask(round=1, client_id="c", version="v", seed=5, config=ClientConfig())
    assert task != EvaluateTask(round=1, client_id="c", version="v", seed=5, config=ClientConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.round = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        FitTask(1, "c", "v", 5, ClientConfig())  # type: ignore[misc]


def test_failure_holds_its_context() -> None:
    failure = Failure(
        client_id="c", round=2, stage=Stage.VERIFY, kind=FailureKind.NON_FINITE, message="nan"
    )
    assert dataclasses.asdict(failure) == {
        "client_id": "c",
        "round": 2,
        "stage": "verify",
        "kind": "non_finite",
        "message": "nan",
        "detail": "",
    }
    assert failure.key == "verify:non_finite"


def test_a_flood_of_metric_keys_is_refused() -> None:
    check_metrics({f"m{i}": 1.0 for i in range(256)})
    with pytest.raises(ClientError, match="257 keys, at most 256"):
        check_metrics({f"m{i}": 1.0 for i in range(257)})


def test_a_long_metric_name_is_refused() -> None:
    check_metrics({"k" * 128: 1.0})
    with pytest.raises(ClientError, match="at most 128 characters"):
        check_metrics({"k" * 129: 1.0})
