"""Plot helpers shared by the benchmarks (matplotlib is the optional ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def finish(fig: Any, axes: Sequence[Any], path: Path) -> None:
    """Grid every panel, lay the figure out and write it as a PNG."""
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    path: Path,
    *,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
    target: float | None = None,
) -> bool:
    """One line per named curve against the round number; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="round", ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8)
    finish(fig, [ax], path)
    return True
