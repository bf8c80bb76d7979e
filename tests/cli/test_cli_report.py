"""``fedhive report``: the page and PNGs it writes, one clear line per bad run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fedhive.cli.main import main
from report_runs import FULL_PLOTS, full_records, png_size, record, write_run


def test_report_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "dp", full_records(3))
    b = write_run(tmp_path / "plain", [record(r, accuracy=0.1 * r) for r in (1, 2)])
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.count('<svg class="plot"') == 8
    printed = capsys.readouterr().out
    assert f"report of 2 run(s), 8 plots: {out}" in printed
    assert "note: plain: no differential privacy (no ε)." in printed


def test_report_writes_one_png_per_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="--png needs the bench extra (matplotlib)")
    run = write_run(tmp_path / "run", full_records(3))
    pngs = tmp_path / "png"
    assert main(["report", str(run), "--out", str(tmp_path / "r.html"), "--png", str(pngs)]) == 0
    written = sorted(p.name for p in pngs.iterdir())
    assert written == sorted(f"{key}.png" for key in FULL_PLOTS)
    for name in written:
        width, height = png_size(pngs / name)
        assert (width, height) == (960, 540)  # 6.4 x 3.6 inches at 150 dpi
    assert "8 PNGs written to" in capsys.readouterr().out


def test_png_without_matplotlib_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    run = write_run(tmp_path / "run", [record(1, loss=1.0)])
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out), "--png", str(tmp_path / "png")]) == 2
    assert "--png needs matplotlib: pip install 'fedhive[bench]'" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


def test_a_folder_without_metrics_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_run(tmp_path / "good", [record(1)])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(good), str(empty), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fedhive: error: {empty}: no metrics.jsonl")
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_a_malformed_line_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", [record(1)])
    (run / "metrics.jsonl").write_text('{"round": 1}\nnot json\n')
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fedhive: error: {run / 'metrics.jsonl'}:2: not valid JSON")
    assert err.count("\n") == 1


def test_the_command_imports_matplotlib_only_for_png() -> None:
    import subprocess

    code = "import fedhive.cli.main, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_report_of_a_real_simulation(tmp_path: Path) -> None:
    """A run folder as `fedhive simulate` writes it: every file the report reads."""
    tests = Path(__file__).resolve().parents[1]
    (tmp_path / "fake_app.py").write_text((tests / "fake_app.py").read_text())
    config = tmp_path / "config.toml"
    config.write_text(
        '[run]\napp = "fake_app:build"\nrounds = 3\nseed = 5\n'
        "[strategy]\nfraction_fit = 1.0\nfraction_evaluate = 1.0\n"
        "[evaluation]\nfederated_every = 1\n"
        '[app]\nclients = ["good-0", "good-1", "raise-0"]\n'
    )
    run = tmp_path / "run"
    assert main(["simulate", str(config), "--out", str(run)]) == 0
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for key in ("metric_loss", "metric_accuracy", "clients", "bytes", "round_time"):
        assert f'id="plot-{key}"' in page
    assert 'id="plot-epsilon"' not in page
    assert "No run used differential privacy: no ε plot." in page
    assert "<tr><th>run.seed</th><td>5</td></tr>" in page
    assert "<tr><th>rounds</th><td>3</td></tr>" in page  # summary.json
