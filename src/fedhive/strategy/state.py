"""Typed, versioned strategy state: one value per stateful component, and its codec.

An algorithm's state is a :class:`StrategyState`: a tuple of component states, one per
component in the algorithm's order (server optimizer, update transforms, schedule).
Each is a frozen dataclass subclassing :class:`ComponentState`, with a ``KIND`` (its
name in the codec), a ``VERSION`` and its own field codec. The server persists a state
with :func:`state_to_bytes` after every round and reads it back with
:func:`state_from_bytes`; the algorithm then checks it (:meth:`StrategyState.part`),
so a state of another algorithm, version or model size is a :class:`StateError`,
never a silent reset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from fedhive.core.serde import RecordValue, record_from_bytes, record_to_bytes
from fedhive.core.weights import FloatVector
from fedhive.errors import StateError

FORMAT = 2
"""The state codec's format (1 was the string-keyed dict of earlier releases)."""

_KINDS: dict[str, type[ComponentState]] = {}
_S = TypeVar("_S", bound="ComponentState")


class ComponentState(ABC):
    """The state of one component; subclasses are frozen dataclasses with a ``KIND``."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "KIND" in cls.__dict__:
            _KINDS[cls.KIND] = cls

    @abstractmethod
    def fields(self) -> dict[str, RecordValue]:
        """The state as record values (arrays and scalars)."""

    @classmethod
    @abstractmethod
    def from_fields(cls: type[_S], fields: Mapping[str, RecordValue]) -> _S:
        """The state from :meth:`fields`' output.

        Raises:
            StateError: a field is missing or of the wrong type.
        """


@dataclass(frozen=True)
class Stateless(ComponentState):
    """The state of a component that keeps none (server SGD, a synchronous schedule)."""

    KIND: ClassVar[str] = "none"

    def fields(self) -> dict[str, RecordValue]:
        """No fields."""
        return {}

    @classmethod
    def from_fields(cls, fields: Mapping[str, RecordValue]) -> Stateless:
        """The one stateless value."""
        return cls()


@dataclass(frozen=True)
class StrategyState:
    """An algorithm's round-to-round state: one component state per component."""

    parts: tuple[ComponentState, ...]

    def part(self, index: int, kind: type[_S]) -> _S:
        """Component ``index``'s state, which must be a ``kind``.

        Raises:
            StateError: the state has no such part, or it is another component's.
        """
        if not 0 <= index < len(self.parts):
            raise StateError(
                f"strategy state: {len(self.parts)} component states, the algorithm "
                f"reads component {index} ({kind.KIND})"
            )
        value = self.parts[index]
        if not isinstance(value, kind):
            raise StateError(
                f"strategy state: component {index} holds {type(value).KIND!r} state, "
                f"the algorithm expects {kind.KIND!r} (a resumed run whose algorithm changed?)"
            )
        return value

    def of(self, kind: type[_S]) -> _S:
        """The one component state of type ``kind`` (e.g. ``state.of(Moments).m``).

        Raises:
            StateError: the state holds no ``kind``, or several.
        """
        found = [p for p in self.parts if isinstance(p, kind)]
        if len(found) != 1:
            raise StateError(f"strategy state holds {len(found)} {kind.KIND!r} states, not one")
        return found[0]

    def replace_part(self, index: int, value: ComponentState) -> StrategyState:
        """This state with component ``index``'s state replaced."""
        parts = list(self.parts)
        parts[index] = value
        return StrategyState(tuple(parts))


def state_to_bytes(state: StrategyState) -> bytes:
    """``state`` as a record: ``format``, ``parts``, each part's ``<index>:kind`` and
    ``<index>:version``, and its fields under ``<index>.`` (a field may be called
    ``version``: the two never share a key)."""
    record: dict[str, RecordValue] = {"format": FORMAT, "parts": len(state.parts)}
    for index, part in enumerate(state.parts):
        record[f"{index}:kind"] = part.KIND
        record[f"{index}:version"] = part.VERSION
        for name, value in part.fields().items():
            record[f"{index}.{name}"] = value
    return record_to_bytes(record)


def state_from_bytes(data: bytes) -> StrategyState:
    """The state :func:`state_to_bytes` wrote.

    Raises:
        StateError: the record is of another format, or names an unknown kind or version.
        SerializationError: the bytes are not a record.
    """
    record = record_from_bytes(data)
    if record.get("format") != FORMAT:
        raise StateError(
            f"strategy state: format {record.get('format')!r}, this release reads {FORMAT} "
            "(a state store of an earlier release cannot be resumed; start a new run)"
        )
    count = record.get("parts")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise StateError(f"strategy state: parts must be an int >= 0, got {count!r}")
    parts: list[ComponentState] = []
    for index in range(count):
        kind = record.get(f"{index}:kind")
        cls = _KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise StateError(f"strategy state: component {index} has unknown kind {kind!r}")
        version = record.get(f"{index}:version")
        if isinstance(version, bool) or not isinstance(version, int) or version != cls.VERSION:
            raise StateError(
                f"strategy state: {cls.KIND} state version {version!r}, this release "
                f"reads {cls.VERSION}"
            )
        prefix = f"{index}."
        fields = {k[len(prefix) :]: v for k, v in record.items() if k.startswith(prefix)}
        parts.append(cls.from_fields(fields))
    return StrategyState(tuple(parts))


def vector_field(fields: Mapping[str, RecordValue], name: str, kind: str) -> FloatVector:
    """Field ``name`` as a float64 vector.

    Raises:
        StateError: it is missing or not a one-dimensional float array.
    """
    value = fields.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind != "f":
        raise StateError(f"{kind} state: {name} must be a float vector, got {_shown(value)}")
    return value.astype(np.float64, copy=False)


def int_field(fields: Mapping[str, RecordValue], name: str, kind: str) -> int:
    """Field ``name`` as an int >= 0.

    Raises:
        StateError: it is missing, not an int, or negative.
    """
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateError(f"{kind} state: {name} must be an int >= 0, got {value!r}")
    return value


def float_field(
    fields: Mapping[str, RecordValue], name: str, kind: str, *, optional: bool = False
) -> float | None:
    """Field ``name`` as a float (None when absent and ``optional``).

    Raises:
        StateError: it is missing (and not optional) or not a float.
    """
    value = fields.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"{kind} state: {name} must be a number, got {value!r}")
    return float(value)


def check_size(vector: FloatVector, size: int, what: str) -> FloatVector:
    """``vector`` if it holds ``size`` values.

    Raises:
        StateError: it holds another number (the model changed since the state was made).
    """
    if vector.shape != (size,):
        raise StateError(
            f"strategy state: {what} holds {vector.size} values, the model needs {size} "
            "(a resumed run whose model changed?)"
        )
    return vector


def _shown(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return repr(value)


__all__ = [
    "ComponentState",
    "Stateless",
    "StrategyState",
    "state_from_bytes",
    "state_to_bytes",
]
