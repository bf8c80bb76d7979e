"""TOML tables onto frozen dataclasses, with errors that name the key path.

``from_table(FedAvg, {"fraction_fit": 1.5}, "strategy")`` raises
``ConfigError("strategy.fraction_fit: must be in (0, 1], got 1.5")``: unknown keys, wrong
types and values the dataclass refuses all name the full key and what is allowed.
:func:`to_table` is the way back: a config dataclass as strict JSON data that
``from_table`` turns into an equal dataclass (an infinite float is the string ``"inf"``,
which a float setting accepts).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from fedhive.errors import ConfigError

T = TypeVar("T")

_INFINITIES = {"inf": math.inf, "-inf": -math.inf}
"""How strict JSON spells an infinite float setting (JSON has no ``Infinity``)."""


def from_table(cls: type[T], table: object, path: str) -> T:
    """Build the frozen dataclass ``cls`` from a TOML ``table`` found at ``path``.

    Raises:
        ConfigError: unknown key, wrong type or refused value; the message starts with
            the key path.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in table:
        if key not in fields:
            raise ConfigError(
                f"{_join(path, key)}: unknown key; allowed: {', '.join(sorted(fields))}"
            )
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and required and f.name not in table:
            raise ConfigError(f"{_join(path, f.name)}: missing required key")
    kwargs = {key: convert(hints[key], value, _join(path, key)) for key, value in table.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(path, exc.message)) from None


def convert(tp: Any, value: object, path: str) -> Any:
    """Check ``value`` against the type ``tp`` (and convert enums, tables, int→float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        errors = []
        for option in options:
            try:
                return convert(option, value, path)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: invalid value {value!r}")
    if tp is Any or tp is object:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [str(m.value) for m in tp]
        if value not in allowed:
            raise ConfigError(f"{path}: must be one of {', '.join(allowed)}; got {value!r}")
        return tp(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_table(tp, value, path)
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: must be a table, got {type(value).__name__}")
        return dict(value)
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: object, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and value in _INFINITIES:
            return _INFINITIES[value]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: must be a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported setting type {tp!r}")


def to_table(value: object) -> Any:
    """A config dataclass (or a value in one) as strict JSON data ``from_table`` reads
    back equal: enums as their values, an infinite float as ``"inf"``/``"-inf"``, tuples
    as lists, and a None left out (None is every optional setting's default: absent).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = (f.name for f in dataclasses.fields(value) if f.init)
        items = ((name, getattr(value, name)) for name in fields)
        return {name: to_table(item) for name, item in items if item is not None}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): to_table(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [to_table(item) for item in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise ConfigError unless ``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")


def check_real(
    name: str,
    value: object,
    *,
    low: float,
    high: float = float("inf"),
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ConfigError unless ``value`` is a finite real number in the interval."""
    if math.isinf(high) and math.isinf(low):
        interval = "a finite number"
    elif math.isinf(high):
        interval = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = (low < number if low_open else low <= number) and (
            number < high if high_open else number <= high
        )
    if not ok:
        raise ConfigError(f"{name}: must be {interval}, got {value!r}")


def _finite(value: float) -> bool:
    """Whether ``value`` is a finite real (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
