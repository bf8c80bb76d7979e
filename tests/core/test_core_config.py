"""from_table maps TOML tables onto frozen dataclasses; every error names its key path."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import pytest

from fedhive.core.config import from_table
from fedhive.core.messages import ClientConfig, PrivacyBudget
from fedhive.errors import ConfigError
from fedhive.strategy.algorithm import Algorithm


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, kw_only=True)
class Inner:
    count: int = 1
    rate: float = 0.5

    def __post_init__(self) -> None:
        if self.rate > 1:
            raise ConfigError(f"rate: must be <= 1, got {self.rate}")


@dataclass(frozen=True, kw_only=True)
class Outer:
    name: str = "a"
    flag: bool = False
    color: Color = Color.RED
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    table: dict[str, int] = field(default_factory=dict)


def test_empty_table_gives_the_defaults() -> None:
    assert from_table(Outer, {}, "sec") == Outer()


def test_values_are_converted_and_nested_tables_built() -> None:
    out = from_table(
        Outer,
        {
            "name": "x",
            "flag": True,
            "color": "blue",
            "inner": {"count": 4, "rate": 1},
            "maybe": {"count": 2},
            "table": {"k": 1},
        },
        "sec",
    )
    assert out == Outer(
        name="x",
        flag=True,
        color=Color.BLUE,
        inner=Inner(count=4, rate=1.0),
        maybe=Inner(count=2),
        table={"k": 1},
    )
    assert type(out.inner.rate) is float  # int accepted for float, and converted
    assert out.color is Color.BLUE


def test_unknown_key_names_path_and_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        from_table(Outer, {"colour": "red"}, "sec")
    assert str(info.value) == (
        "sec.colour: unknown key; allowed: color, flag, inner, maybe, name, table"
    )


def test_unknown_nested_key_names_the_full_path() -> None:
    with pytest.raises(ConfigError, match=r"^sec\.inner\.size: unknown key; allowed: count, rate$"):
        from_table(Outer, {"inner": {"size": 1}}, "sec")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"inner": {"count": "3"}}, "sec.inner.count: must be an integer, got '3'"),
        ({"inner": {"count": 2.0}}, "sec.inner.count: must be an integer, got 2.0"),
        ({"inner": {"count": True}}, "sec.inner.count: must be an integer, got True"),
        ({"inner": {"rate": "0.1"}}, "sec.inner.rate: must be a number, got '0.1'"),
        ({"inner": {"rate": False}}, "sec.inner.rate: must be a number, got False"),
        ({"flag": 1}, "sec.flag: must be true or false, got 1"),
        ({"name": 3}, "sec.name: must be a string, got 3"),
        ({"inner": 3}, "sec.inner: must be a table, got int"),
        ({"table": [1]}, "sec.table: must be a table, got list"),
        ({"maybe": {"count": "x"}}, "sec.maybe.count: must be an integer, got 'x'"),
    ],
)
def test_wrong_types_name_the_key_path(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_table(Outer, table, "sec")
    assert str(info.value) == message


def test_enum_error_lists_the_allowed_values() -> None:
    with pytest.raises(ConfigError) as info:
        from_table(Outer, {"color": "green"}, "sec")
    assert str(info.value) == "sec.color: must be one of red, blue; got 'green'"


def test_enum_member_name_is_not_a_value() -> None:
    with pytest.raises(ConfigError, match="must be one of red, blue"):
        from_table(Outer, {"color": "RED"}, "sec")


def test_refused_value_from_post_init_gets_the_path_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        from_table(Outer, {"inner": {"rate": 1.5}}, "sec")
    assert str(info.value) == "sec.inner.rate: must be <= 1, got 1.5"


def test_table_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"^sec: must be a table, got list$"):
        from_table(Outer, [], "sec")


def test_empty_path_adds_no_leading_dot() -> None:
    with pytest.raises(ConfigError, match=r"^bogus: unknown key"):
        from_table(Inner, {"bogus": 1}, "")


def test_docstring_example_for_fedavg() -> None:
    with pytest.raises(ConfigError) as info:
        from_table(Algorithm, {"fraction_fit": 1.5}, "strategy")
    assert str(info.value) == "strategy.fraction_fit: must be in (0, 1], got 1.5"
    assert isinstance(info.value, ValueError)


def test_real_nested_dataclass_client_privacy_budget() -> None:
    config = from_table(
        ClientConfig,
        {"local_epochs": 2, "privacy_budget": {"epsilon_max": 8, "delta": 1e-5}},
        "client",
    )
    assert config.privacy_budget == PrivacyBudget(epsilon_max=8.0, delta=1e-5)
    assert type(config.privacy_budget.epsilon_max) is float
    with pytest.raises(ConfigError, match=r"^client\.privacy_budget\.delta: must be in \(0, 1\)"):
        from_table(ClientConfig, {"privacy_budget": {"epsilon_max": 1, "delta": 2}}, "client")
    with pytest.raises(ConfigError, match=r"^client\.learning_rate: must be a finite number > 0"):
        from_table(ClientConfig, {"learning_rate": 0}, "client")


def test_client_extra_table_is_passed_through() -> None:
    config = from_table(ClientConfig, {"extra": {"mu": 0.1, "tag": "x"}}, "client")
    assert dict(config.extra) == {"mu": 0.1, "tag": "x"}


def test_missing_required_key_names_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"client\.privacy_budget.*epsilon_max"):
        from_table(ClientConfig, {"privacy_budget": {"delta": 1e-5}}, "client")


@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["huge", "-huge"])
def test_an_integer_too_large_for_a_float_is_a_config_error(value: int) -> None:
    # Before: math.isfinite raised OverflowError, which escapes `except FedhiveError`.
    from fedhive.core.config import check_real

    with pytest.raises(ConfigError, match="must be a finite number"):
        check_real("clip_range", value, low=-math.inf)
