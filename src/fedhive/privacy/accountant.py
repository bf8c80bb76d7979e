"""Privacy as composable events, accounted with Google's ``dp-accounting``.

Each round of DP training releases one (possibly Poisson-subsampled) Gaussian mechanism:
a :class:`GaussianEvent` names it with the field's own words (``noise_multiplier``,
``sample_rate``) and a repetition ``count``. :func:`epsilon` composes a sequence of events
in an RDP accountant (Mironov, "Rényi Differential Privacy", CSF 2017; subsampling by
Mironov, Talwar and Zhang 2019) or a privacy-loss-distribution accountant (Doroshenko et
al., "Connect the Dots", PETS 2022), both under add-or-remove-one adjacency, and
converts to epsilon at ``target_delta``. RDP is fast and an upper bound; PLD is tighter
and slower (about a second per distinct event).

``dp_accounting`` is imported only when an epsilon is computed (its import takes about a
second); it comes with the ``dp`` extra.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fedhive.core._compat import StrEnum
from fedhive.core.config import check_int, check_real
from fedhive.errors import ConfigError, MissingDependencyError, SerializationError

__all__ = ["AccountantKind", "GaussianEvent", "epsilon", "would_exceed"]

_FLOAT_FIELDS = ("noise_multiplier", "sample_rate")
_FIELDS = frozenset({*_FLOAT_FIELDS, "count"})


class AccountantKind(StrEnum):
    """Which accountant composes the events."""

    RDP = "rdp"
    PLD = "pld"


def _dp_accounting() -> Any:
    """Import ``dp_accounting`` on first use (typed Any: it ships no type hints)."""
    try:
        return importlib.import_module("dp_accounting")
    except ImportError as exc:
        raise MissingDependencyError(
            "privacy accounting needs dp-accounting; install fedhive[dp]: pip install 'fedhive[dp]'"
        ) from exc


@dataclass(frozen=True, kw_only=True)
class GaussianEvent:
    """``count`` rounds of a Gaussian mechanism on a ``sample_rate`` Poisson sample.

    Attributes:
        noise_multiplier: noise std divided by the clipping norm (the sensitivity), > 0.
        sample_rate: probability that a record (a client or example) takes part, (0, 1].
        count: how many times the mechanism ran, >= 1.
    """

    noise_multiplier: float
    sample_rate: float
    count: int = 1

    def __post_init__(self) -> None:
        check_real("noise_multiplier", self.noise_multiplier, low=0, low_open=True)
        check_real("sample_rate", self.sample_rate, low=0, high=1, low_open=True)
        check_int("count", self.count, minimum=1)

    def to_dp_event(self) -> Any:
        """This event as a ``dp_accounting.DpEvent`` (needs the ``dp`` extra)."""
        dp = _dp_accounting()
        event = dp.GaussianDpEvent(self.noise_multiplier)
        if self.sample_rate < 1:
            event = dp.PoissonSampledDpEvent(self.sample_rate, event)
        return dp.SelfComposedDpEvent(event, self.count)

    def to_dict(self) -> dict[str, float | int]:
        """A JSON-able dict: ``{"noise_multiplier", "sample_rate", "count"}``."""
        return {
            "noise_multiplier": float(self.noise_multiplier),
            "sample_rate": float(self.sample_rate),
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: object) -> GaussianEvent:
        """Rebuild an event from :meth:`to_dict`'s output.

        Raises:
            SerializationError: not a mapping, missing or unknown keys, wrong types or
                values out of range.
        """
        if not isinstance(data, Mapping):
            raise SerializationError(f"privacy event must be an object, got {type(data).__name__}")
        if set(data) != _FIELDS:
            raise SerializationError(
                f"privacy event keys must be {sorted(_FIELDS)}, got {sorted(map(str, data))}"
            )
        for name in _FLOAT_FIELDS:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SerializationError(f"privacy event {name}: not a number: {value!r}")
        count = data["count"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise SerializationError(f"privacy event count: not an integer: {count!r}")
        try:
            return cls(
                noise_multiplier=float(data["noise_multiplier"]),
                sample_rate=float(data["sample_rate"]),
                count=count,
            )
        except ConfigError as exc:
            raise SerializationError(f"privacy event {exc.message}") from None
        except OverflowError:  # an integer too large for a float
            raise SerializationError("privacy event: a number out of range") from None


def merge_events(events: Sequence[GaussianEvent]) -> list[GaussianEvent]:
    """Fold runs of consecutive events with the same mechanism into one, counts summed."""
    merged: list[GaussianEvent] = []
    for index, event in enumerate(events):
        if not isinstance(event, GaussianEvent):
            raise ConfigError(f"events[{index}]: must be a GaussianEvent, got {event!r}")
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.noise_multiplier == event.noise_multiplier
            and last.sample_rate == event.sample_rate
        ):
            merged[-1] = GaussianEvent(
                noise_multiplier=last.noise_multiplier,
                sample_rate=last.sample_rate,
                count=last.count + event.count,
            )
        else:
            merged.append(event)
    return merged


def epsilon(
    events: Sequence[GaussianEvent],
    *,
    target_delta: float,
    kind: AccountantKind = AccountantKind.RDP,
) -> float:
    """The epsilon at ``target_delta`` of all ``events`` composed (0.0 for none).

    Consecutive events with the same mechanism are composed as one self-composed event,
    so a thousand identical rounds cost one accountant step.

    Raises:
        ConfigError: ``target_delta`` not in (0, 1), an unknown ``kind`` or a non-event.
        MissingDependencyError: ``dp-accounting`` (the ``dp`` extra) is not installed.
    """
    check_real("target_delta", target_delta, low=0, high=1, low_open=True, high_open=True)
    try:
        kind = AccountantKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in AccountantKind)
        raise ConfigError(f"kind: must be one of {allowed}; got {kind!r}") from None
    merged = merge_events(events)
    if not merged:
        return 0.0
    return _composed(tuple(merged), target_delta, kind)


@functools.lru_cache(maxsize=256)
def _composed(
    merged: tuple[GaussianEvent, ...], target_delta: float, kind: AccountantKind
) -> float:
    """The accountant's epsilon for merged events; memoized, because a round asks twice
    (may it run? what did it spend?) and PLD composition takes up to a second."""
    dp = _dp_accounting()
    rdp = kind is AccountantKind.RDP
    accountant = dp.rdp.RdpAccountant() if rdp else dp.pld.PLDAccountant()
    with _quiet_absl():
        for event in merged:
            accountant.compose(event.to_dp_event())
        spent = float(accountant.get_epsilon(target_delta))
    return spent if not math.isnan(spent) else math.inf


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp-accounting logs (through absl) each RDP order it skips for not converging;
    the epsilon stays valid (the bound is a minimum over the orders that remain)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def would_exceed(
    events: Sequence[GaussianEvent],
    new: GaussianEvent,
    *,
    target_epsilon: float,
    target_delta: float,
    kind: AccountantKind = AccountantKind.RDP,
) -> bool:
    """Whether adding ``new`` to ``events`` takes epsilon above ``target_epsilon``.

    Raises:
        ConfigError: ``target_epsilon`` not a positive finite number, or as :func:`epsilon`.
        MissingDependencyError: ``dp-accounting`` (the ``dp`` extra) is not installed.
    """
    check_real("target_epsilon", target_epsilon, low=0, low_open=True)
    spent = epsilon([*events, new], target_delta=target_delta, kind=kind)
    return spent > target_epsilon
