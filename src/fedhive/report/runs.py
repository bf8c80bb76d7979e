"""A run directory as the report reads it: its rounds, config and summary.

``fedhive simulate --out DIR`` and ``fedhive server`` write the same files
(:mod:`fedhive.simulation.output`): ``metrics.jsonl`` (one JSON object per round),
``config.json`` and ``summary.json``. Only ``metrics.jsonl`` is required: a run that
crashed has no summary yet, and its rounds are still worth plotting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedhive.errors import FedhiveError, SerializationError


@dataclass(frozen=True)
class Run:
    """One run directory's records.

    Attributes:
        name: the label the report shows (the directory's name, made unique).
        path: the run directory.
        rounds: metrics.jsonl's objects, in file order.
        config: config.json ({} when absent).
        summary: summary.json ({} when absent).
    """

    name: str
    path: Path
    rounds: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def load_runs(paths: list[Path]) -> list[Run]:
    """Read every run directory; the labels are the directories' names, with the parent
    folder prefixed where two names would collide (``a/run`` and ``b/run``)."""
    names = [path.resolve().name or str(path) for path in paths]
    labels = [
        f"{path.resolve().parent.name}/{name}" if names.count(name) > 1 else name
        for path, name in zip(paths, names, strict=True)
    ]
    labels = [
        label if labels.count(label) == 1 else f"{label} ({i + 1})"
        for i, label in enumerate(labels)
    ]
    return [load_run(path, name=label) for path, label in zip(paths, labels, strict=True)]


def load_run(path: Path, *, name: str | None = None) -> Run:
    """Read one run directory.

    Raises:
        FedhiveError: ``path`` is not a directory, or holds no metrics.jsonl.
        SerializationError: a line of metrics.jsonl, or config.json / summary.json, is
            not a JSON object (the message names the file and line).
    """
    if not path.is_dir():
        raise FedhiveError(f"{path}: not a run directory (no such folder)")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise FedhiveError(
            f"{path}: no metrics.jsonl (is this the --out folder of `fedhive simulate` "
            "or the state folder of `fedhive server`?)"
        )
    rounds = [
        _round(line, f"{metrics}:{number}")
        for number, line in enumerate(metrics.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip()
    ]
    return Run(
        name=name or path.resolve().name,
        path=path,
        rounds=rounds,
        config=_optional_json(path / "config.json"),
        summary=_optional_json(path / "summary.json"),
    )


def _round(line: str, where: str) -> dict[str, Any]:
    record = _object(line, where)
    number = record.get("round")
    if not isinstance(number, int) or isinstance(number, bool):
        raise SerializationError(f"{where}: a round record needs an integer 'round'")
    return record


def _optional_json(path: Path) -> dict[str, Any]:
    return _object(path.read_text(encoding="utf-8"), str(path)) if path.is_file() else {}


def _object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SerializationError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise SerializationError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value
