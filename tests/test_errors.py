"""The exception tree: builtin bases, context in str(), and the public list of errors."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedhive import errors
from fedhive.errors import (
    AggregateCheckError,
    AggregationError,
    ClientError,
    CodecError,
    ConfigError,
    DTypeMismatchError,
    FedhiveError,
    MissingDependencyError,
    NameMismatchError,
    NonFiniteError,
    NotEnoughClientsError,
    PeerRejectedError,
    PrivacyBudgetError,
    SecAggError,
    SerializationError,
    ShapeMismatchError,
    SignatureError,
    StateError,
    StoreError,
    TransportError,
    ValidationError,
)

BUILTIN_BASES: list[tuple[type[FedhiveError], type[Exception]]] = [
    (ConfigError, ValueError),
    (MissingDependencyError, ImportError),
    (SerializationError, ValueError),
    (CodecError, SerializationError),
    (ValidationError, ValueError),
    (NameMismatchError, ValidationError),
    (ShapeMismatchError, ValidationError),
    (DTypeMismatchError, ValidationError),
    (NonFiniteError, ValidationError),
    (SignatureError, ValidationError),
    (ClientError, RuntimeError),
    (AggregationError, ArithmeticError),
    (AggregateCheckError, AggregationError),
    (NotEnoughClientsError, RuntimeError),
    (TransportError, ConnectionError),
    (PeerRejectedError, TransportError),
    (StateError, ConfigError),
    (StoreError, RuntimeError),
    (PrivacyBudgetError, RuntimeError),
    (SecAggError, RuntimeError),
]


@pytest.mark.parametrize(("cls", "builtin"), BUILTIN_BASES)
def test_each_error_is_a_fedhive_error_and_its_builtin(
    cls: type[FedhiveError], builtin: type[Exception]
) -> None:
    assert issubclass(cls, FedhiveError)
    assert issubclass(cls, builtin)
    with pytest.raises(builtin) as info:
        raise cls("refused")
    assert isinstance(info.value, FedhiveError)
    assert info.value.message == "refused"


def test_an_aggregate_check_error_names_its_check() -> None:
    err = AggregateCheckError("mean out of range", check="mean_range", round=2)
    assert isinstance(err, AggregationError)
    assert err.check == "mean_range"
    assert str(err) == "mean out of range [round=2]"


def test_config_error_is_caught_by_except_value_error() -> None:
    caught: Exception | None = None
    try:
        raise ConfigError("strategy.fraction_fit: must be in (0, 1], got 1.5")
    except ValueError as exc:
        caught = exc
    assert isinstance(caught, ConfigError)
    assert "strategy.fraction_fit" in str(caught)


def test_validation_errors_are_not_config_errors() -> None:
    assert not issubclass(NonFiniteError, ConfigError)
    assert not issubclass(ConfigError, ValidationError)
    assert not issubclass(SerializationError, ValidationError)


def test_str_without_context_is_the_message() -> None:
    err = FedhiveError("plain message")
    assert str(err) == "plain message"
    assert err.client_id is None
    assert err.round is None
    assert err.stage is None


def test_str_shows_client_round_and_stage_in_order() -> None:
    err = ClientError("bad update", client_id="c7", round=3, stage="verify")
    assert str(err) == "bad update [client=c7, round=3, stage=verify]"
    assert (err.client_id, err.round, err.stage) == ("c7", 3, "verify")


def test_round_zero_is_shown_not_dropped_as_falsy() -> None:
    assert str(AggregationError("x", round=0)) == "x [round=0]"


def test_partial_context_shows_only_what_is_known() -> None:
    assert str(TransportError("gone", stage="transport")) == "gone [stage=transport]"
    assert str(ValidationError("v", client_id="a")) == "v [client=a]"


@given(
    message=st.text(),
    client_id=st.none() | st.text(min_size=1),
    round_=st.none() | st.integers(min_value=0),
    stage=st.none() | st.text(min_size=1),
)
def test_str_always_starts_with_message_and_names_known_context(
    message: str, client_id: str | None, round_: int | None, stage: str | None
) -> None:
    err = NotEnoughClientsError(message, client_id=client_id, round=round_, stage=stage)
    text = str(err)
    assert text.startswith(message)
    if client_id is not None:
        assert f"client={client_id}" in text
    if round_ is not None:
        assert f"round={round_}" in text
    if stage is not None:
        assert f"stage={stage}" in text
    if client_id is None and round_ is None and stage is None:
        assert text == message


def test_public_list_is_exactly_the_error_classes_of_the_module() -> None:
    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, FedhiveError)
    }
    assert set(errors.__all__) == defined
    assert {cls.__name__ for cls, _ in BUILTIN_BASES} | {"FedhiveError"} == defined
