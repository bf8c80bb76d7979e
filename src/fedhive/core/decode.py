"""Config tables onto msgspec Structs, with errors that name the key path.

Every config section is a frozen msgspec Struct (``forbid_unknown_fields``) whose fields
carry their types, ``msgspec.Meta`` constraints and defaults. :func:`decode` converts a
parsed TOML (or config.json) table with ``msgspec.convert`` and turns msgspec's
``"Expected `int` >= 1 - at `$.rounds`"`` into ``"run.rounds: must be an integer >= 1,
got 0"``, read back from the declaration. :func:`plain` is the way back: a Struct as
strict JSON data that ``decode`` turns into an equal Struct (an infinite float is the
string ``"inf"``, which a float field accepts).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi

from fedhive.errors import ConfigError

_MAX = sys.float_info.max
Finite = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]
"""A finite real number (msgspec's float accepts infinities unless bounded)."""
FiniteNonNegative = Annotated[float, msgspec.Meta(ge=0, le=_MAX)]
FinitePositive = Annotated[float, msgspec.Meta(gt=0, le=_MAX)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
AtLeastZero = Annotated[int, msgspec.Meta(ge=0)]

_INFINITIES = {"inf": math.inf, "-inf": -math.inf}
"""How strict JSON spells an infinite float setting (JSON has no ``Infinity``)."""
_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<where>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"^Object (?P<what>contains unknown|missing required) field `(?P<key>[^`]*)`$")


def decode(cls: Any, table: object, path: str) -> Any:
    """The Struct ``cls`` from the config ``table`` found at ``path``.

    Raises:
        ConfigError: unknown key, missing key, wrong type or refused value; the message
            starts with the key path and says what is allowed.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: must be a table, got {type(table).__name__}")
    info = mi.type_info(cls)
    data = _with_infinities(info, table)
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        raise ConfigError(_located(str(exc), info, data, path)) from None


def plain(value: object) -> Any:
    """``value`` (a Struct, or data holding Structs) as strict JSON data :func:`decode`
    reads back equal: enums as their values, an infinite float as ``"inf"``/``"-inf"``,
    and a None field left out (None is every optional field's default: absent)."""
    return _json(msgspec.to_builtins(value, order="deterministic"))


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _with_infinities(info: mi.Type, data: Any) -> Any:
    """``data`` with ``"inf"``/``"-inf"`` read as floats where a float field holds them."""
    info = _unwrap(info, data)
    if isinstance(info, mi.FloatType) and isinstance(data, str) and data in _INFINITIES:
        return _INFINITIES[data]
    if isinstance(info, mi.StructType) and isinstance(data, Mapping):
        fields = {f.encode_name: f.type for f in info.fields}
        return {k: _with_infinities(fields[k], v) if k in fields else v for k, v in data.items()}
    return data


def _unwrap(info: mi.Type, data: Any) -> mi.Type:
    """The type of ``info`` that ``data`` is meant as: the non-None option of an
    optional, the Struct of a tagged union that ``data``'s tag names."""
    if isinstance(info, mi.UnionType):
        options = [t for t in info.types if not isinstance(t, mi.NoneType)]
        structs = [t for t in options if isinstance(t, mi.StructType)]
        if isinstance(data, Mapping) and len(structs) > 1:
            for struct in structs:
                if struct.tag_field is not None and data.get(struct.tag_field) == struct.tag:
                    return struct
        if len(options) == 1:
            return options[0]
    return info


def _located(error: str, root: mi.Type, data: Any, path: str) -> str:
    """msgspec's error as ``path.key: what is wrong``, from the declaration."""
    found = _LOCATION.match(error)
    assert found is not None  # the pattern matches every string
    info, value, where = root, data, path
    for key in re.findall(r"\.([^.\[]+)|\[([^\]]*)\]", found["where"] or ""):
        name = key[0] or key[1]
        info = _unwrap(info, value)
        fields = (
            {f.encode_name: f.type for f in info.fields} if isinstance(info, mi.StructType) else {}
        )
        info = fields.get(name, mi.AnyType())
        value = value.get(name) if isinstance(value, Mapping) else None
        where = _join(where, name)
    info = _unwrap(info, value)
    message = found["message"]
    field = _FIELD.match(message)
    if field is not None:
        if field["what"] == "missing required":
            return f"{_join(where, field['key'])}: missing required key"
        names = info.fields if isinstance(info, mi.StructType) else ()
        allowed = ", ".join(sorted(f.encode_name for f in names))
        return f"{_join(where, field['key'])}: unknown key; allowed: {allowed}"
    if isinstance(info, mi.StructType) and isinstance(value, Mapping):
        own = message.split(":", 1)[0]  # a check of the section's own (__post_init__)
        if own in {f.encode_name for f in info.fields}:
            return _join(where, message)
        return f"{where}: {message}"
    if isinstance(info, (mi.StructType, mi.DictType)):
        return f"{where}: must be a table, got {type(value).__name__}"
    return f"{where}: must be {expected(info)}, got {value!r}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def expected(declared: mi.Type) -> str:
    """What a field declared as ``declared`` accepts, in :func:`check_real`'s words."""
    if isinstance(declared, mi.EnumType):
        return f"one of {', '.join(str(m.value) for m in declared.cls)}"
    if isinstance(declared, mi.LiteralType):
        return f"one of {', '.join(str(v) for v in declared.values)}"
    if isinstance(declared, mi.BoolType):
        return "true or false"
    if isinstance(declared, mi.StrType):
        return "a non-empty string" if declared.min_length else "a string"
    if isinstance(declared, (mi.StructType, mi.DictType)):
        return "a table"
    if isinstance(declared, (mi.IntType, mi.FloatType)):
        return _interval(declared)
    return "a valid value"


def _interval(declared: mi.IntType | mi.FloatType) -> str:
    low = declared.gt if declared.gt is not None else declared.ge
    high = declared.lt if declared.lt is not None else declared.le
    if low is not None and low <= -_MAX:
        low = None
    if high is not None and high >= _MAX:
        high = None
    bounded = declared.le is not None or declared.ge is not None
    if isinstance(declared, mi.IntType):
        if low is not None and high is not None:
            return f"an integer in [{low}, {high}]"
        if high is not None:
            return f"an integer <= {high}"
        return "an integer" + (f" >= {low}" if low is not None else "")
    if low is not None and high is not None:
        opening = "(" if declared.gt is not None else "["
        closing = ")" if declared.lt is not None else "]"
        return f"in {opening}{low:g}, {high:g}{closing}"
    finite = "a finite number" if bounded or declared.gt is not None else "a number"
    if low is not None:
        return f"{finite} {'>' if declared.gt is not None else '>='} {low:g}"
    return finite
