"""decode maps config tables onto msgspec Structs; every error names its key path."""

from __future__ import annotations

import enum
import math
from typing import Annotated

import msgspec
import pytest

from fedhive.config.sections import ClientSection
from fedhive.core.decode import FinitePositive, decode, plain
from fedhive.core.messages import PrivacyBudget
from fedhive.errors import ConfigError
from fedhive.strategy.registry import parse_strategy


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    count: int = 1
    rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    speed: FinitePositive = 1.0

    def __post_init__(self) -> None:
        if self.count == 13:
            raise ConfigError(f"count: must not be unlucky, got {self.count}")


class Outer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = "a"
    flag: bool = False
    color: Color = Color.RED
    inner: Inner = Inner()
    maybe: Inner | None = None
    table: dict[str, int] = {}
    limit: float = 1.0


def test_empty_table_gives_the_defaults() -> None:
    assert decode(Outer, {}, "sec") == Outer()


def test_values_are_converted_and_nested_tables_built() -> None:
    table = {
        "name": "x",
        "flag": True,
        "color": "blue",
        "inner": {"count": 4, "rate": 1},
        "maybe": {"count": 2},
        "table": {"k": 1},
    }
    out = decode(Outer, table, "sec")
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
        decode(Outer, {"colour": "red"}, "sec")
    assert str(info.value) == (
        "sec.colour: unknown key; allowed: color, flag, inner, limit, maybe, name, table"
    )


def test_unknown_nested_key_names_the_full_path() -> None:
    message = r"^sec\.inner\.size: unknown key; allowed: count, rate, speed$"
    with pytest.raises(ConfigError, match=message):
        decode(Outer, {"inner": {"size": 1}}, "sec")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"inner": {"count": "3"}}, "sec.inner.count: must be an integer, got '3'"),
        ({"inner": {"count": 2.0}}, "sec.inner.count: must be an integer, got 2.0"),
        ({"inner": {"count": True}}, "sec.inner.count: must be an integer, got True"),
        ({"inner": {"rate": "0.1"}}, "sec.inner.rate: must be in [0, 1], got '0.1'"),
        ({"inner": {"rate": 1.5}}, "sec.inner.rate: must be in [0, 1], got 1.5"),
        ({"inner": {"speed": 0}}, "sec.inner.speed: must be a finite number > 0, got 0"),
        ({"inner": {"speed": math.inf}}, "sec.inner.speed: must be a finite number > 0, got inf"),
        ({"limit": False}, "sec.limit: must be a number, got False"),
        ({"flag": 1}, "sec.flag: must be true or false, got 1"),
        ({"name": 3}, "sec.name: must be a string, got 3"),
        ({"inner": 3}, "sec.inner: must be a table, got int"),
        ({"table": [1]}, "sec.table: must be a table, got list"),
        ({"maybe": {"count": "x"}}, "sec.maybe.count: must be an integer, got 'x'"),
        ({"color": "green"}, "sec.color: must be one of red, blue, got 'green'"),
        ({"color": "RED"}, "sec.color: must be one of red, blue, got 'RED'"),
    ],
)
def test_wrong_values_name_the_key_path(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode(Outer, table, "sec")
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_a_check_of_the_struct_itself_gets_the_path_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        decode(Outer, {"inner": {"count": 13}}, "sec")
    assert str(info.value) == "sec.inner.count: must not be unlucky, got 13"


def test_table_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"^sec: must be a table, got list$"):
        decode(Outer, [], "sec")


def test_empty_path_adds_no_leading_dot() -> None:
    with pytest.raises(ConfigError, match=r"^bogus: unknown key"):
        decode(Inner, {"bogus": 1}, "")


def test_infinity_is_the_string_inf_in_json_and_reads_back() -> None:
    section = Outer(limit=math.inf)
    assert plain(section)["limit"] == "inf"
    assert decode(Outer, plain(section), "sec") == section
    with pytest.raises(ConfigError, match=r"^sec\.name: must be a string"):
        decode(Outer, {"name": 1}, "sec")
    assert decode(Outer, {"name": "inf"}, "sec").name == "inf"  # a string stays a string


def test_docstring_example_for_fedavg() -> None:
    with pytest.raises(ConfigError) as info:
        parse_strategy({"fraction_fit": 1.5}, "strategy")
    assert str(info.value) == "strategy.fraction_fit: must be in (0, 1], got 1.5"


def test_real_nested_client_privacy_budget() -> None:
    table = {"local_epochs": 2, "privacy_budget": {"epsilon_max": 8, "delta": 1e-5}}
    config = decode(ClientSection, table, "client").build("client")
    assert config.privacy_budget == PrivacyBudget(epsilon_max=8.0, delta=1e-5)
    assert type(config.privacy_budget.epsilon_max) is float
    bad = {"privacy_budget": {"epsilon_max": 1, "delta": 2}}
    with pytest.raises(ConfigError, match=r"^client\.privacy_budget\.delta: must be in \(0, 1\)"):
        decode(ClientSection, bad, "client")
    with pytest.raises(ConfigError, match=r"^client\.learning_rate: must be a finite number > 0"):
        decode(ClientSection, {"learning_rate": 0}, "client")


def test_client_extra_table_is_passed_through() -> None:
    section = decode(ClientSection, {"extra": {"mu": 0.1, "tag": "x"}}, "client")
    assert dict(section.build("client").extra) == {"mu": 0.1, "tag": "x"}


def test_missing_required_key_names_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"^client\.privacy_budget\.epsilon_max: missing"):
        decode(ClientSection, {"privacy_budget": {"delta": 1e-5}}, "client")


@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["huge", "-huge"])
def test_an_integer_too_large_for_a_float_is_a_config_error(value: int) -> None:
    # Before: math.isfinite raised OverflowError, which escapes `except FedhiveError`.
    from fedhive.core.config import check_real

    with pytest.raises(ConfigError, match="must be a finite number"):
        check_real("clip_range", value, low=-math.inf)
    with pytest.raises(ConfigError, match=r"sec\.inner\.speed: must be a finite number"):
        decode(Outer, {"inner": {"speed": value}}, "sec")
