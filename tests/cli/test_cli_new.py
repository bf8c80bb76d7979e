"""``fedhive new``: each template is a project that `fedhive simulate` and its own test run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedhive.cli.main import main
from fedhive.cli.new import FRAMEWORKS
from fedhive.core._compat import tomllib

ROOT = Path(__file__).resolve().parents[2]
FILES = {".gitignore", "README.md", "app.py", "config.toml", "tests/test_app.py"}
NEEDS = {"torch": "torch", "sklearn": "sklearn", "numpy": None}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_a_new_project_simulates_as_is_and_its_test_passes(
    framework: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if NEEDS[framework] is not None:
        pytest.importorskip(NEEDS[framework])
    assert main(["new", "my-fl_1", "--framework", framework, "--dir", str(tmp_path)]) == 0
    project = tmp_path / "my-fl_1"
    assert "fedhive simulate config.toml" in capsys.readouterr().out
    assert {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()} == FILES
    readme = (project / "README.md").read_text()
    assert readme.startswith("# my-fl_1\n")
    assert "fedhive simulate config.toml" in readme
    assert "fedhive client --server" in readme
    assert "__" not in readme.replace("__pycache__", "")

    simulated = run(["-m", "fedhive", "simulate", "config.toml", "--out", "runs/first"], project)
    assert simulated.returncode == 0, simulated.stderr
    out = project / "runs" / "first"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 5
    assert summary["committed_rounds"] == 5
    accuracy = summary["final"]["accuracy"]
    assert isinstance(accuracy, float)
    assert math.isfinite(accuracy)
    assert accuracy > 0.7  # chance is 0.1 (digits) or 0.25 (the numpy blobs)
    assert (out / "model.safetensors").stat().st_size > 0

    tested = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


@pytest.mark.parametrize("name", ["1st", "a/b", "..", "", "_x", "a b", "x" * 65, "café"])
def test_a_bad_name_is_one_line_and_exit_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", name, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedhive: error: name:")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_project_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "app.py").write_text("mine")
    (tmp_path / "file").write_text("mine too")
    for name in ("taken", "file"):
        assert main(["new", name, "--framework", "numpy", "--dir", str(tmp_path)]) == 2
        assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "taken" / "app.py").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["app.py"]
    assert (tmp_path / "file").read_text() == "mine too"
    (tmp_path / "empty").mkdir()  # an empty folder is filled
    assert main(["new", "empty", "--framework", "numpy", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "empty" / "app.py").is_file()
    assert main(["new", "p", "--dir", str(tmp_path / "missing")]) == 2
    assert "is not an existing folder" in capsys.readouterr().err


def test_an_unknown_framework_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["new", "p", "--framework", "jax"])
    assert exited.value.code == 2
    assert "invalid choice: 'jax'" in capsys.readouterr().err


def test_every_template_ships_as_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["fedhive"]
    spec = importlib.util.find_spec("fedhive")
    assert spec is not None
    assert spec.origin is not None
    package = Path(spec.origin).parent
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    templates = {p for p in (package / "cli" / "templates").rglob("*") if p.is_file()}
    assert templates
    assert templates <= shipped, sorted(str(p) for p in templates - shipped)
