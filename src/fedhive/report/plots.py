"""The report's plots, drawn from the runs' round records (no rendering here).

Each :class:`Plot` holds one line per run and variant: a run's colour is its index,
a variant's dash says which of the round's figures it is (centralized or federated
evaluation; clients selected, succeeded or failed; bytes up or down). A series no run
has is left out, and the report says so in a note instead of failing: a run without
DP has no epsilon, one without federated evaluation no federated metrics.

The per-client distribution is the bytes each client sent up in a round's fit
(``fit.traffic``, which every run records): the median client as a line, the least and
the most as a band. Round records hold no per-client metrics (only their aggregate in
``federated`` and ``train``), so bytes are the per-client figure there is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fedhive.report.runs import Run

Dash = Literal["solid", "dashed", "dotted"]
Unit = Literal["", "bytes", "s"]
Getter = Callable[[dict[str, Any]], float | None]


@dataclass(frozen=True)
class Series:
    """One line: ``run`` indexes the report's runs (its colour); ``low``/``high``, when
    set, bound a band drawn behind the line."""

    run: int
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    dash: Dash = "solid"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Plot:
    """One chart: ``key`` names its PNG file and its element in the page."""

    key: str
    title: str
    y_label: str
    series: tuple[Series, ...]
    unit: Unit = ""
    caption: str = ""


@dataclass(frozen=True)
class Report:
    """What the page and the PNGs show: the runs, their plots, and what was absent."""

    runs: tuple[Run, ...]
    plots: tuple[Plot, ...]
    notes: tuple[str, ...]


FIRST_METRICS = ("accuracy", "loss")


def build_report(runs: Iterable[Run]) -> Report:
    """Every plot the runs' records allow, and a note for each series they lack."""
    runs = tuple(runs)
    notes: list[str] = []
    plots = [
        *_metric_plots(runs, notes),
        *_train_plots(runs),
        _plot(
            runs,
            "clients",
            "Clients per round (fit)",
            "clients",
            _cohort("fit", "selected", "succeeded", "failed"),
        ),
        _plot(
            runs,
            "bytes",
            "Bytes per round (fit)",
            "bytes",
            _cohort("fit", "bytes_up", "bytes_down", labels=("up", "down")),
            unit="bytes",
        ),
        _plot(
            runs,
            "round_time",
            "Round time",
            "seconds",
            [("wall clock", "solid", _number("seconds"))],
            unit="s",
        ),
        _epsilon_plot(runs, notes),
        _per_client_plot(runs, notes),
    ]
    return Report(
        runs=runs, plots=tuple(p for p in plots if p is not None and p.series), notes=tuple(notes)
    )


def _metric_plots(runs: tuple[Run, ...], notes: list[str]) -> list[Plot | None]:
    for run in runs:
        for kind in ("centralized", "federated"):
            if not any(r.get(kind) for r in run.rounds):
                notes.append(f"{run.name}: no {kind} evaluation in its records.")
    names = _keys(runs, "centralized", "federated")
    return [
        _plot(
            runs,
            f"metric_{name}",
            f"{name.capitalize()} per round",
            name,
            [
                ("centralized", "solid", _number("centralized", name)),
                ("federated", "dashed", _number("federated", name)),
            ],
        )
        for name in names
    ]


def _train_plots(runs: tuple[Run, ...]) -> list[Plot | None]:
    return [
        _plot(
            runs,
            f"train_{name}",
            f"Training: {name} (clients' fit metrics, aggregated)",
            name,
            [("train", "solid", _number("train", name))],
        )
        for name in _keys(runs, "train")
    ]


def _epsilon_plot(runs: tuple[Run, ...], notes: list[str]) -> Plot | None:
    plot = _plot(
        runs,
        "epsilon",
        "Privacy spent: ε per round",
        "ε",
        [("ε", "solid", _number("privacy", "epsilon"))],
    )
    with_dp = {s.run for s in plot.series}
    if not with_dp:
        notes.append("No run used differential privacy: no ε plot.")
    notes.extend(
        f"{run.name}: no differential privacy (no ε)."
        for i, run in enumerate(runs)
        if with_dp and i not in with_dp
    )
    deltas = sorted(
        {
            r["privacy"]["delta"]
            for run in runs
            for r in run.rounds
            if _number("privacy", "delta")(r) is not None
        }
    )
    caption = f"at δ = {', '.join(f'{d:g}' for d in deltas)}" if deltas else ""
    return Plot(plot.key, plot.title, plot.y_label, plot.series, caption=caption)


def _per_client_plot(runs: tuple[Run, ...], notes: list[str]) -> Plot | None:
    series = []
    for i, run in enumerate(runs):
        points = [(r["round"], _client_bytes_up(r)) for r in run.rounds]
        points = [(x, values) for x, values in points if values]
        if not points:
            notes.append(f"{run.name}: no per-client traffic in its records.")
            continue
        series.append(
            Series(
                run=i,
                label="median client",
                x=tuple(x for x, _ in points),
                y=tuple(float(statistics.median(v)) for _, v in points),
                low=tuple(float(min(v)) for _, v in points),
                high=tuple(float(max(v)) for _, v in points),
            )
        )
    return Plot(
        "per_client_bytes_up",
        "Per-client bytes up per round (fit)",
        "bytes",
        tuple(series),
        unit="bytes",
        caption="line: the median client; band: the least to the most a client sent",
    )


def _client_bytes_up(record: dict[str, Any]) -> list[float]:
    traffic = _get(record, "fit", "traffic")
    if not isinstance(traffic, dict):
        return []
    values = (_finite(_get(t, "bytes_up")) for t in traffic.values())
    return [v for v in values if v is not None]


def _cohort(
    cohort: str, *fields: str, labels: tuple[str, ...] | None = None
) -> list[tuple[str, Dash, Getter]]:
    dashes: tuple[Dash, ...] = ("solid", "dashed", "dotted")
    return [
        (label, dash, _number(cohort, field))
        for label, dash, field in zip(labels or fields, dashes, fields, strict=False)
    ]


def _plot(
    runs: tuple[Run, ...],
    key: str,
    title: str,
    y_label: str,
    variants: list[tuple[str, Dash, Getter]],
    *,
    unit: Unit = "",
) -> Plot:
    series = []
    for i, run in enumerate(runs):
        for label, dash, getter in variants:
            points = [(float(r["round"]), getter(r)) for r in run.rounds]
            kept = [(x, y) for x, y in points if y is not None]
            if kept:
                series.append(
                    Series(
                        run=i,
                        label=label,
                        dash=dash,
                        x=tuple(x for x, _ in kept),
                        y=tuple(y for _, y in kept),
                    )
                )
    return Plot(key=key, title=title, y_label=y_label, series=tuple(series), unit=unit)


def _keys(runs: tuple[Run, ...], *sections: str) -> list[str]:
    found = {
        name
        for run in runs
        for r in run.rounds
        for section in sections
        if isinstance(r.get(section), dict)
        for name in r[section]
        if _number(section, name)(r) is not None
    }
    return [n for n in FIRST_METRICS if n in found] + sorted(found - set(FIRST_METRICS))


def _number(*keys: str) -> Getter:
    return lambda record: _finite(_get(record, *keys))


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
