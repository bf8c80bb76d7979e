"""The fedhive command: output files, progress lines, and one clear line per bad config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhive.cli.main import main

TESTS = Path(__file__).resolve().parents[1]

CONFIG = """
[run]
app = "fake_app:build"
rounds = 3
seed = 5

[strategy]
fraction_fit = 0.5
fraction_evaluate = 1.0

[evaluation]
federated_every = 1

[app]
clients = ["good-0", "good-1", "good-2", "raise-0"]
"""


def write_config(tmp_path: Path, text: str) -> Path:
    # The app is found beside the config: copy the fake app there.
    (tmp_path / "fake_app.py").write_text((TESTS / "fake_app.py").read_text())
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_simulate_writes_the_run_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, CONFIG)
    out = tmp_path / "out"
    assert main(["simulate", str(config), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 3
    assert summary["seed"] == 5
    assert set(summary["final"]) == {"loss"}
    assert len(summary["model_sha256"]) == 64
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2, 3]
    for line in lines:
        assert line["fit"]["selected"] == 2
        assert line["fit"]["succeeded"] + line["fit"]["failed"] == 2
        assert line["fit"]["bytes_down"] > 0
        assert "loss" in line["centralized"]
        assert "accuracy" in line["federated"]
        assert line["seconds"] >= 0
    assert (out / "model.safetensors").stat().st_size > 0
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["strategy"]["name"] == "fedavg"
    assert resolved["client"]["batch_size"] == 32  # the default, filled in
    printed = capsys.readouterr().out
    assert "round   3" in printed
    assert summary["model_sha256"] in printed


def test_seed_override_changes_the_model(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    shas = []
    for seed in ("1", "1", "2"):
        out = tmp_path / f"out{len(shas)}"
        assert main(["simulate", str(config), "--out", str(out), "--seed", seed]) == 0
        shas.append(json.loads((out / "summary.json").read_text())["model_sha256"])
    assert shas[0] == shas[1] != shas[2]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("fraction_fit = 0.5", "fraction_fit = 1.5"),
            "strategy.fraction_fit: must be in (0, 1], got 1.5",
        ),
        (("rounds = 3", "rounds = 'three'"), "run.rounds: must be an integer"),
        (("[evaluation]", "[evaluation]\nfederated = 2"), "evaluation.federated: unknown key"),
        (("fraction_fit = 0.5", "name = 'fedsgd'"), "strategy.name: must be one of fedavg"),
        (("[app]", "[ap]"), "ap: unknown section"),
        (("fake_app:build", "missing_app:build"), "run.app:"),
    ],
)
def test_a_bad_config_gets_one_clear_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], message: str
) -> None:
    config = write_config(tmp_path, CONFIG.replace(*edit))
    assert main(["simulate", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("fedhive: error: ")
    assert message in err[0]


def test_a_missing_config_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
