"""``fedhive report RUN_DIR...``: one HTML page of one or more runs' metrics, overlaid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from fedhive.report import build_report, load_runs, render_page, write_pngs


def add_parser(commands: Any) -> None:
    """Register the ``report`` subcommand."""
    report = commands.add_parser(
        "report", help="an HTML page of run directories' metrics (several overlay)"
    )
    report.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="a folder with metrics.jsonl (simulate --out, server --state)",
    )
    report.add_argument(
        "--out",
        type=Path,
        default=Path("report.html"),
        help="the HTML file to write (default report.html)",
    )
    report.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write one PNG per plot into DIR (needs matplotlib)",
    )
    report.set_defaults(handler=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Read the runs, write the page (and the PNGs), say what was written."""
    report = build_report(load_runs(args.runs))
    pngs = write_pngs(report, args.png) if args.png is not None else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_page(report), encoding="utf-8")
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(
        f"report of {len(report.runs)} run(s), {len(report.plots)} plots: {args.out}",
        highlight=False,
        soft_wrap=True,
    )
    if pngs:
        console.print(f"{len(pngs)} PNGs written to {args.png}/", highlight=False, soft_wrap=True)
    return 0
