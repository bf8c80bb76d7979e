"""The HTML page: one SVG per plot, a colour per run, tables, escaping, nothing fetched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedhive.report import build_report, load_runs, render_page
from fedhive.report.plots import Plot, Series, Unit
from fedhive.report.style import PALETTE, format_value, nice_ticks
from fedhive.report.svg import render_svg
from report_runs import FULL_PLOTS, full_records, record, write_run

SVG = re.compile(r'<svg class="plot" id="plot-([a-z_]+)".*?</svg>', re.DOTALL)


def page_of(tmp_path: Path, *runs: list[dict[str, object]], **files: dict[str, object]) -> str:
    paths = [write_run(tmp_path / f"run{i}", r, **files) for i, r in enumerate(runs)]
    return render_page(build_report(load_runs(paths)))


def test_one_svg_per_plot_each_with_lines(tmp_path: Path) -> None:
    page = page_of(tmp_path, full_records(4))
    charts = SVG.findall(page)
    assert charts == FULL_PLOTS
    for match in SVG.finditer(page):
        assert "<polyline" in match.group(0)
    assert page.count('class="band"') == 1  # the per-client band


def test_the_page_fetches_nothing_and_runs_no_script(tmp_path: Path) -> None:
    page = page_of(tmp_path, full_records(3))
    assert "<script" not in page
    assert "<link" not in page
    assert " src=" not in page
    urls = set(re.findall(r"https?://[^\s\"')]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched


def test_two_runs_have_their_own_colours_and_names(tmp_path: Path) -> None:
    page = page_of(tmp_path, full_records(3), [record(r, accuracy=0.1 * r) for r in (1, 2)])
    accuracy = SVG.search(page)
    assert accuracy is not None
    assert f'stroke="{PALETTE[0]}"' in accuracy.group(0)
    assert f'stroke="{PALETTE[1]}"' in accuracy.group(0)
    assert "<strong>run0</strong>" in page
    assert "<strong>run1</strong>" in page
    assert "run1: no differential privacy (no ε)." in page


def test_config_and_summary_tables_mark_what_differs(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [record(1)], config={"run": {"seed": 0, "rounds": 1}})
    b = write_run(tmp_path / "b", [record(1)], config={"run": {"seed": 1, "rounds": 1}})
    page = render_page(build_report(load_runs([a, b])))
    assert '<tr class="differs"><th>run.seed</th><td>0</td><td>1</td></tr>' in page
    assert "<tr><th>run.rounds</th><td>1</td><td>1</td></tr>" in page
    assert "No run has a summary.json." in page


def test_names_and_values_are_escaped(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a<b&c", [record(1, loss=1.0)], config={"app": {"x": "<i>"}})
    page = render_page(build_report(load_runs([run])))
    assert "a&lt;b&amp;c" in page
    assert "a<b" not in page
    assert "<td>&lt;i&gt;</td>" in page


def test_a_single_round_and_a_constant_series_draw_inside_the_chart() -> None:
    plot = Plot("k", "t", "y", (Series(run=0, label="v", x=(3.0,), y=(5.0,)),))
    svg = render_svg(plot, ("run",))
    numbers = [float(n) for n in re.findall(r'c[xy]="([^"]+)"', svg)]
    assert len(numbers) == 2
    assert all(0 < n < 720 for n in numbers)  # no nan, no division by a zero range


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1_250_000, "bytes", "1.25M"),
        (2500, "bytes", "2.5k"),
        (12, "bytes", "12"),
        (0.25, "", "0.25"),
    ],
)
def test_format_value(value: float, unit: Unit, text: str) -> None:
    assert format_value(value, unit) == text


def test_nice_ticks_cover_the_range_in_round_steps() -> None:
    assert nice_ticks(0.2, 0.61) == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert nice_ticks(0, 1_004_000) == [0, 250_000, 500_000, 750_000, 1_000_000, 1_250_000]
    ticks = nice_ticks(5, 5)
    assert ticks[0] < 5 < ticks[-1]


def test_the_round_axis_starts_at_the_first_round_and_positive_values_at_zero() -> None:
    rounds = tuple(float(r) for r in range(1, 11))
    plot = Plot("k", "t", "y", (Series(run=0, label="v", x=rounds, y=(7.0,) * 10),))
    svg = render_svg(plot, ("run",))
    x_labels = re.findall(r'text-anchor="middle">([\d.]+)</text>', svg)
    assert x_labels == ["1", "2", "4", "6", "8", "10"]  # no round 0
    y_labels = re.findall(r'text-anchor="end">([\d.]+)</text>', svg)
    assert y_labels[0] == "0"
    assert float(y_labels[-1]) >= 7
