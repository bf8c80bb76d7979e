"""One :class:`~fedhive.report.plots.Plot` as an inline SVG chart: no script, no
network. Each point carries a ``<title>`` (the browser's own tooltip: run, variant,
round and value)."""

from __future__ import annotations

from html import escape

from fedhive.report.plots import Plot, Series
from fedhive.report.style import DASHES, colour, format_value, nice_ticks

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 14, 44
LINE_WIDTH = 2.0


class _Axes:
    """Data to pixel coordinates of the plot area."""

    def __init__(self, plot: Plot) -> None:
        xs = [x for s in plot.series for x in s.x]
        ys = [y for s in plot.series for y in (*s.y, *(s.low or ()), *(s.high or ()))]
        self.x_range, self.x_ticks = _round_ticks(min(xs), max(xs))
        y_low = min(ys)
        if y_low >= 0 and (y_low <= max(ys) / 2 or y_low == max(ys)):
            y_low = 0.0  # counts and bytes read best from zero, a constant one too
        self.y_ticks = nice_ticks(y_low, max(ys))

    def px(self, x: float) -> float:
        low, high = self.x_range
        return LEFT + (x - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return HEIGHT - BOTTOM - (y - low) / (high - low) * (HEIGHT - TOP - BOTTOM)


def render_svg(plot: Plot, run_names: tuple[str, ...]) -> str:
    """The chart of ``plot`` (which has at least one series), its lines coloured by run."""
    axes = _Axes(plot)
    parts = [
        f'<svg class="plot" id="plot-{escape(plot.key)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(plot.title)}">',
        *_grid(plot, axes),
        *(
            _band(s, s.low, s.high, axes)
            for s in plot.series
            if s.low is not None and s.high is not None
        ),
        *(_line(plot, s, axes, run_names[s.run]) for s in plot.series),
        "</svg>",
    ]
    return "\n".join(parts)


def _grid(plot: Plot, axes: _Axes) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    out = ['<g class="axes" stroke="#ddd" stroke-width="1">']
    out += [
        f'<line x1="{LEFT}" x2="{right}" y1="{axes.py(y):.1f}" y2="{axes.py(y):.1f}"/>'
        for y in axes.y_ticks
    ]
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" stroke="#888"/>')
    out.append(f'<line x1="{LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>')
    out.append("</g>")
    out.append('<g class="labels" font-size="11" fill="#444" font-family="sans-serif">')
    out += [
        f'<text x="{LEFT - 6}" y="{axes.py(y) + 4:.1f}" text-anchor="end">'
        f"{escape(format_value(y, plot.unit))}</text>"
        for y in axes.y_ticks
    ]
    out += [
        f'<text x="{axes.px(x):.1f}" y="{bottom + 16}" text-anchor="middle">{x:g}</text>'
        for x in axes.x_ticks
    ]
    out.append(
        f'<text x="{(LEFT + right) / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">round</text>'
    )
    middle = (TOP + bottom) / 2
    out.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle:.1f})">{escape(plot.y_label)}</text>'
    )
    out.append("</g>")
    return out


def _band(series: Series, low: tuple[float, ...], high: tuple[float, ...], axes: _Axes) -> str:
    upper = [f"{axes.px(x):.1f},{axes.py(y):.1f}" for x, y in zip(series.x, high, strict=True)]
    lower = [f"{axes.px(x):.1f},{axes.py(y):.1f}" for x, y in zip(series.x, low, strict=True)]
    return (
        f'<polygon class="band" points="{" ".join(upper + lower[::-1])}" '
        f'fill="{colour(series.run)}" fill-opacity="0.18" stroke="none"/>'
    )


def _line(plot: Plot, series: Series, axes: _Axes, run_name: str) -> str:
    stroke = colour(series.run)
    dash = " ".join(f"{d * LINE_WIDTH:g}" for d in DASHES[series.dash])
    points = " ".join(
        f"{axes.px(x):.1f},{axes.py(y):.1f}" for x, y in zip(series.x, series.y, strict=True)
    )
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    marks = [
        f'<circle cx="{axes.px(x):.1f}" cy="{axes.py(y):.1f}" r="2.5" fill="{stroke}">'
        f"<title>{escape(run_name)} · {escape(series.label)} · round {x:g}: "
        f"{escape(format_value(y, plot.unit))}</title></circle>"
        for x, y in zip(series.x, series.y, strict=True)
    ]
    return "\n".join(
        [
            f'<g class="series" data-run="{series.run}" data-label="{escape(series.label)}">',
            f'<polyline points="{points}" fill="none" stroke="{stroke}" '
            f'stroke-width="{LINE_WIDTH:g}"{dash_attr}/>',
            *marks,
            "</g>",
        ]
    )


def _round_ticks(low: float, high: float) -> tuple[tuple[float, float], list[float]]:
    """The x range (from the first round to the last; one round padded by one each side)
    and its ticks: the first round, then whole multiples of a round step, about eight."""
    if high <= low:
        return (low - 1, low + 1), [low]
    ticks = nice_ticks(low, high, count=8)
    step = max(1.0, ticks[1] - ticks[0])
    multiples = [i * step for i in range(int(low // step) + 1, int(high // step) + 1)]
    return (low, high), [low, *(x for x in multiples if x - low >= step / 2)]
