"""Run reports: one self-contained HTML page (and, with matplotlib, PNGs) of one or more
run directories' metrics, overlaid for comparison (``fedhive report RUN_DIR...``)."""

from __future__ import annotations

from fedhive.report.page import render_page
from fedhive.report.plots import Plot, Report, Series, build_report
from fedhive.report.png import write_pngs
from fedhive.report.runs import Run, load_run, load_runs

__all__ = [
    "Plot",
    "Report",
    "Run",
    "Series",
    "build_report",
    "load_run",
    "load_runs",
    "render_page",
    "write_pngs",
]
