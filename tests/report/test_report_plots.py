"""Which plots and series the report draws from round records, and what it notes absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedhive.errors import FedhiveError, SerializationError
from fedhive.report import Report, build_report, load_run, load_runs
from report_runs import FULL_PLOTS, full_records, record, write_run


def report_of(tmp_path: Path, *runs: list[dict[str, object]]) -> Report:
    paths = [write_run(tmp_path / f"run{i}", records) for i, records in enumerate(runs)]
    return build_report(load_runs(paths))


def test_every_series_present(tmp_path: Path) -> None:
    report = report_of(tmp_path, full_records(4))
    assert [p.key for p in report.plots] == FULL_PLOTS
    assert report.notes == ()
    plots = {p.key: p for p in report.plots}
    accuracy = {s.label: s for s in plots["metric_accuracy"].series}
    assert accuracy["centralized"].x == (1, 2, 3, 4)
    assert accuracy["centralized"].y == pytest.approx((0.2, 0.4, 0.6, 0.8))
    assert accuracy["federated"].x == (2, 4)  # evaluated every other round
    assert accuracy["federated"].dash == "dashed"
    clients = {s.label: s.y for s in plots["clients"].series}
    assert clients == {"selected": (4,) * 4, "succeeded": (4, 4, 3, 4), "failed": (0, 0, 1, 0)}
    assert {s.label: s.y for s in plots["bytes"].series} == {
        "up": (600, 700, 800, 900),
        "down": (3000,) * 4,
    }
    (epsilon,) = plots["epsilon"].series
    assert epsilon.y == (1.5, 3.0, 4.5, 6.0)
    assert plots["epsilon"].caption == "at δ = 1e-05"
    (per_client,) = plots["per_client_bytes_up"].series
    # clients sent 100*r, 300 and 200 bytes in round r
    assert per_client.y == (200, 200, 300, 300)
    assert per_client.low == (100, 200, 200, 200)
    assert per_client.high == (300, 300, 300, 400)


def test_missing_series_are_absent_with_a_note(tmp_path: Path) -> None:
    plain = [record(r, loss=1.0 / r) for r in (1, 2, 3)]
    report = report_of(tmp_path, plain)
    keys = [p.key for p in report.plots]
    assert keys == ["metric_loss", "clients", "bytes", "round_time"]
    (loss,) = next(p for p in report.plots if p.key == "metric_loss").series
    assert loss.label == "centralized"
    assert report.notes == (
        "run0: no federated evaluation in its records.",
        "No run used differential privacy: no ε plot.",
        "run0: no per-client traffic in its records.",
    )


def test_two_runs_overlay_on_the_same_plots(tmp_path: Path) -> None:
    dp = full_records(3)
    plain = [record(r, accuracy=0.3 * r, loss=1.0, seconds=0.1 * r) for r in (1, 2, 3, 4, 5)]
    report = report_of(tmp_path, dp, plain)
    assert [run.name for run in report.runs] == ["run0", "run1"]
    plots = {p.key: p for p in report.plots}
    accuracy = plots["metric_accuracy"].series
    assert [(s.run, s.label) for s in accuracy] == [
        (0, "centralized"),
        (0, "federated"),
        (1, "centralized"),
    ]
    assert accuracy[2].x == (1, 2, 3, 4, 5)
    assert [s.run for s in plots["epsilon"].series] == [0]
    assert "run1: no differential privacy (no ε)." in report.notes
    assert "run1: no federated evaluation in its records." in report.notes


def test_non_finite_and_non_numeric_values_are_skipped(tmp_path: Path) -> None:
    records = [record(1, loss=float("nan")), record(2, loss=1.0), record(3, loss=0.5)]
    records[2]["centralized"]["note"] = "text"
    report = report_of(tmp_path, records)
    (loss,) = next(p for p in report.plots if p.key == "metric_loss").series
    assert loss.x == (2, 3)
    assert "metric_note" not in [p.key for p in report.plots]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"round": 1', "metrics.jsonl:2: not valid JSON"),
        ("[1, 2]", "metrics.jsonl:2: expected a JSON object, got list"),
        ('{"round": "two"}', "metrics.jsonl:2: a round record needs an integer 'round'"),
    ],
)
def test_a_malformed_metrics_line_names_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    run = write_run(tmp_path / "run", [record(1, loss=1.0)])
    with (run / "metrics.jsonl").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(SerializationError, match=re.escape(message)):
        load_run(run)


def test_a_folder_without_metrics_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FedhiveError, match=r"no metrics\.jsonl"):
        load_run(tmp_path)
    with pytest.raises(FedhiveError, match="not a run directory"):
        load_run(tmp_path / "absent")


def test_config_and_summary_are_read_and_optional(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "r", [record(1)], config={"run": {"rounds": 1}}, summary={"rounds": 1}
    )
    loaded = load_run(run)
    assert loaded.config == {"run": {"rounds": 1}}
    assert loaded.summary == {"rounds": 1}
    bare = load_run(write_run(tmp_path / "bare", [record(1)]))
    assert (bare.config, bare.summary) == ({}, {})
    (run / "summary.json").write_text("[]")
    with pytest.raises(SerializationError, match=r"summary.json: expected a JSON object"):
        load_run(run)


def test_runs_with_the_same_folder_name_get_distinct_labels(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a" / "run", [record(1)])
    b = write_run(tmp_path / "b" / "run", [record(1)])
    assert [r.name for r in load_runs([a, b])] == ["a/run", "b/run"]
    assert [r.name for r in load_runs([a, a])] == ["a/run (1)", "a/run (2)"]
