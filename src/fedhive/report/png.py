"""The report's plots as PNG files for papers, drawn with matplotlib (the ``bench``
extra), imported only when PNGs are asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedhive.errors import MissingDependencyError
from fedhive.report.plots import Plot, Report
from fedhive.report.style import DASHES, colour, format_value

DPI = 150


def write_pngs(report: Report, out_dir: Path) -> list[Path]:
    """One ``KEY.png`` per plot in ``out_dir`` (created); returns the files written.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, MaxNLocator
    except ImportError:
        raise MissingDependencyError(
            "--png needs matplotlib: pip install 'fedhive[bench]'"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [run.name for run in report.runs]
    written = []
    for plot in report.plots:
        figure, axes = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
        _draw(axes, plot, names)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda y, _, u=plot.unit: format_value(y, u)))
        path = out_dir / f"{plot.key}.png"
        figure.savefig(path, dpi=DPI)
        plt.close(figure)
        written.append(path)
    return written


def _draw(axes: Any, plot: Plot, names: list[str]) -> None:
    for series in plot.series:
        style = colour(series.run)
        if series.low is not None and series.high is not None:
            axes.fill_between(series.x, series.low, series.high, color=style, alpha=0.18, lw=0)
        dashes = DASHES[series.dash]
        axes.plot(
            series.x,
            series.y,
            color=style,
            marker="o",
            markersize=3,
            linestyle=(0, dashes) if dashes else "-",
            label=f"{names[series.run]} · {series.label}",
        )
    axes.set_title(plot.title, fontsize=10)
    axes.set_xlabel("round")
    axes.set_ylabel(plot.y_label)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
