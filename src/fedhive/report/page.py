"""The report as one self-contained HTML page: inline CSS and SVG, no script, nothing
fetched, so it opens offline and can be mailed or archived as one file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from fedhive.report.plots import Plot, Report
from fedhive.report.style import colour
from fedhive.report.svg import render_svg

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1500px; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
figure { display: inline-block; margin: 0 1rem 1.5rem 0; vertical-align: top; }
figure h3 { font-size: 0.95rem; margin: 0 0 0.3rem 0; }
figcaption { font-size: 0.8rem; color: #444; max-width: 720px; }
.swatch { display: inline-block; width: 1.6em; height: 0.7em; vertical-align: middle;
  margin: 0 0.3em 0 0.8em; border-radius: 2px; }
.dash { display: inline-block; width: 2.2em; vertical-align: middle; margin: 0 0.3em 0 0.8em;
  border-top: 2px #333; }
ul.runs { list-style: none; padding: 0; } ul.runs li { margin: 0.2rem 0; }
.notes li { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; font-size: 0.8rem; margin-bottom: 1rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
td { font-family: ui-monospace, monospace; word-break: break-all; max-width: 28rem; }
tr.differs th { background: #fff4d6; }
"""


def render_page(report: Report) -> str:
    """The whole page: the runs and their colours, notes on absent series, one figure per
    plot, then the runs' summaries and configs side by side."""
    names = tuple(run.name for run in report.runs)
    title = "fedhive report: " + ", ".join(names)
    body = [
        "<h1>fedhive run report</h1>",
        _runs(report),
        _notes(report.notes),
        '<section class="plots">',
        *(_figure(plot, names) for plot in report.plots),
        "</section>",
        "<h2>Summary</h2>",
        _table([run.summary for run in report.runs], names, "summary.json"),
        "<h2>Config</h2>",
        _table([run.config for run in report.runs], names, "config.json"),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


def _runs(report: Report) -> str:
    items = [
        f'<li><span class="swatch" style="background:{colour(i)}"></span>'
        f"<strong>{escape(run.name)}</strong> — {len(run.rounds)} rounds, "
        f"<code>{escape(str(run.path))}</code></li>"
        for i, run in enumerate(report.runs)
    ]
    return '<ul class="runs">' + "".join(items) + "</ul>"


def _notes(notes: tuple[str, ...]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<section class="notes"><h2>Not in these runs</h2><ul>{items}</ul></section>'


def _figure(plot: Plot, names: tuple[str, ...]) -> str:
    variants = list(dict.fromkeys((s.label, s.dash) for s in plot.series))
    legend = "".join(
        f'<span class="dash" style="border-top-style:{dash}"></span>{escape(label)}'
        for label, dash in variants
    )
    caption = f"<br>{escape(plot.caption)}" if plot.caption else ""
    return (
        f'<figure id="fig-{escape(plot.key)}"><h3>{escape(plot.title)}</h3>'
        f"{render_svg(plot, names)}<figcaption>{legend}{caption}</figcaption></figure>"
    )


def _table(documents: list[dict[str, Any]], names: tuple[str, ...], what: str) -> str:
    flat = [_flatten(doc) for doc in documents]
    keys = sorted({key for doc in flat for key in doc})
    if not keys:
        return f"<p>No run has a {escape(what)}.</p>"
    head = "".join(f"<th>{escape(name)}</th>" for name in names)
    rows = []
    for key in keys:
        values = [doc.get(key, "") for doc in flat]
        differs = ' class="differs"' if len(set(values)) > 1 else ""
        cells = "".join(f"<td>{escape(value)}</td>" for value in values)
        rows.append(f"<tr{differs}><th>{escape(key)}</th>{cells}</tr>")
    return f'<table class="{escape(what)}"><tr><th>key</th>{head}</tr>{"".join(rows)}</table>'


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested objects as dotted keys; other values as compact JSON (lists stay whole)."""
    out: dict[str, str] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            out |= _flatten(item, f"{path}.")
        else:
            out[path] = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
    return out
