"""What the HTML page and the PNGs share: a colour per run, a dash per variant, and the
axes' number format, so a run looks the same in both."""

from __future__ import annotations

import math

from fedhive.report.plots import Dash, Unit

# Okabe-Ito: told apart with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

# On-off lengths in line widths (matplotlib's convention; the SVG scales them by its width).
DASHES: dict[Dash, tuple[float, ...]] = {"solid": (), "dashed": (3.0, 2.0), "dotted": (1.0, 1.5)}


def colour(run: int) -> str:
    """The colour of the report's ``run``-th run (the palette repeats past seven)."""
    return PALETTE[run % len(PALETTE)]


def format_value(value: float, unit: Unit) -> str:
    """A tick or tooltip label: bytes with a decimal prefix (``1.5M``), others short."""
    if unit == "bytes":
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{prefix}"
        return f"{value:.3g}"
    return f"{value:.4g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at most ``low`` to at least ``high``, about ``count`` steps."""
    if not high > low:
        low, high = (
            low - 0.5 if low == 0 else low - abs(low) / 2,
            high + 0.5 if high == 0 else high + abs(high) / 2,
        )
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]
