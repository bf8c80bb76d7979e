"""benchmarks/compression.py in its quick mode (2 rounds, 10 clients): every codec runs,
the results carry the figures the targets need, and the measured uplink follows the
codecs' sizes (4-bit < 8-bit < none; top-1% < top-10%)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.usefixtures("one_torch_thread")
def test_quick_mode_reports_every_codec_with_ordered_uplink(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import compression as bench

    bench.main(["--quick", "--out", str(tmp_path)])

    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    codecs = {r["codec"]: r for r in printed if "codec" in r}
    assert list(codecs) == list(bench.CODECS)
    for r in codecs.values():
        assert set(r) >= {"final_accuracy", "uplink_bytes", "rounds_to_90", "uplink_bytes_to_90"}
        assert 0 <= r["final_accuracy"] <= 1
    uplink = {name: r["uplink_bytes"] for name, r in codecs.items()}
    assert 0 < uplink["4-bit"] < uplink["8-bit"] < uplink["none"]
    assert 0 < uplink["top-1% ef"] < uplink["top-10% ef"] < uplink["none"]
    # the reference's plain update: 2,410 float32 values a client, 10 clients, 2 rounds
    assert uplink["none"] > 2 * 10 * 2410 * 4

    (summary,) = [r for r in printed if r.get("summary")]
    assert summary["uplink_ratio_none_over_8bit"] == pytest.approx(
        uplink["none"] / uplink["8-bit"], abs=1e-3
    )
    assert set(summary["targets"]) == {
        "8bit_within_0.01",
        "8bit_uplink_ratio_ge_3.9",
        "topk_to_90_ratio_ge_10",
    }
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["summary"] == summary
    assert written["settings"]["rounds"] == 2
    for run in written["curves"].values():
        assert len(run["accuracy"]) == len(run["uplink_bytes"]) == 2
        assert run["uplink_bytes"][0] < run["uplink_bytes"][1]  # cumulative
