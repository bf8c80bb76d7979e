"""Run outputs a person can read: metrics.jsonl, summary.json, the model, the config.

``RunWriter`` is a :class:`~fedhive.server.orchestrator.RunObserver`: each finished
round is appended to ``metrics.jsonl`` at once (a crashed run keeps what it did), and
``finish`` writes the summary and the final model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedhive.core.serde import weights_to_bytes
from fedhive.server.history import RoundRecord
from fedhive.server.run import RunResult


class RunWriter:
    """Writes a run's files into ``out_dir`` as the run goes."""

    def __init__(
        self, out_dir: Path, resolved_config: dict[str, Any], *, resume: bool = False
    ) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / "config.json", resolved_config)
        self._metrics = out_dir / "metrics.jsonl"
        if not (resume and self._metrics.exists()):  # a resumed run keeps its earlier lines
            self._metrics.write_text("", encoding="utf-8")

    def round_started(self, round: int, num_tasks: int) -> None:
        """Nothing to write when a round starts."""

    def client_finished(self, round: int, ok: bool) -> None:
        """Nothing to write per client."""

    def round_finished(self, record: RoundRecord) -> None:
        """Append the round's line to metrics.jsonl."""
        with self._metrics.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_json(), sort_keys=True) + "\n")

    def finish(
        self,
        result: RunResult,
        *,
        seed: int,
        wall_seconds: float,
        totals: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write summary.json and model.safetensors; return the summary.

        Args:
            totals: figures of the whole run that replace ``result``'s (a deployed
                server's run may span several processes: rounds, bytes, restarts).
        """
        (self.out_dir / "model.safetensors").write_bytes(weights_to_bytes(result.weights))
        summary = summarize(result, seed=seed, wall_seconds=wall_seconds) | dict(totals or {})
        _write_json(self.out_dir / "summary.json", summary)
        return summary


def summarize(result: RunResult, *, seed: int, wall_seconds: float) -> dict[str, Any]:
    """The run's headline figures."""
    last = result.history[-1] if result.history else None
    federated = next((r.federated for r in reversed(result.history) if r.federated), {})
    return {
        "rounds": last.round if last else 0,
        "committed_rounds": sum(r.committed for r in result.history),
        "final": dict(last.centralized) if last else {},
        "final_federated": dict(federated),
        "wall_seconds": round(wall_seconds, 3),
        "seed": seed,
        "model_sha256": result.version,
        "clients_failed": sum(r.fit.failed for r in result.history),
        "bytes_up": sum(r.fit.bytes_up for r in result.history),
        "bytes_down": sum(r.fit.bytes_down for r in result.history),
        "client_round_bytes": client_round_bytes(result.history),
        "simulated_seconds": last.clock if last else None,
        "privacy": last.privacy.to_json() if last and last.privacy else {},
        "stop_reason": result.stop_reason,
    }


def client_round_bytes(history: Sequence[RoundRecord]) -> dict[str, dict[str, float]]:
    """The mean and the largest bytes one client moved in one round's fit, up and down
    (over every client of every round: what a device's link must carry)."""
    figures = [t for r in history for t in r.fit.traffic.values()]
    up = [t.bytes_up for t in figures]
    down = [t.bytes_down for t in figures]
    return {
        "up": {"mean": _mean(up), "max": max(up, default=0)},
        "down": {"mean": _mean(down), "max": max(down, default=0)},
    }


def _mean(values: Sequence[int]) -> float:
    return round(sum(values) / len(values), 1) if values else 0.0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
