"""benchmarks/deployment_bandwidth.py at a small size (8 clients over mutual TLS, 2
rounds): every variant's rounds succeed, and the measured bytes follow the variants
(8-bit: under a third of the plain uplink; the delta: less down after round 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_a_small_run_reports_every_variant_with_ordered_bytes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import deployment_bandwidth as bench

    bench.main(["--clients", "8", "--rounds", "2", "--params", "5000", "--out", str(tmp_path)])

    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = {r["variant"]: r for r in printed if "variant" in r}
    assert list(rows) == list(bench.VARIANTS)
    assert all(r["succeeded"] == [8, 8] for r in rows.values())
    plain, eight, delta = rows["none"], rows["8-bit"], rows["8-bit + delta"]
    assert plain["up_per_client_round"] == plain["down_per_client_round"]  # same layout
    assert eight["up_per_client_round"] < plain["up_per_client_round"] / 3
    assert eight["down_per_client_round"] == plain["down_per_client_round"]
    assert delta["down"][0] == plain["down"][0]  # round 1: no base yet
    assert delta["down_after_first"] < 0.9 * plain["down_after_first"]
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["ratios"]["8-bit + delta"]["down_after_first"] > 1.1
