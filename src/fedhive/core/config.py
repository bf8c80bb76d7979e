"""Range checks of the values that library objects (built from Python as well as from a
config) validate themselves, with errors that name the field.

``check_real("clip_range", 0, low=0, low_open=True)`` raises
``ConfigError("clip_range: must be a finite number > 0, got 0")``. Config sections are
msgspec Structs whose constraints msgspec enforces (:mod:`fedhive.core.decode`).
"""

from __future__ import annotations

import math

from fedhive.errors import ConfigError


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
