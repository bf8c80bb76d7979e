"""Pathological non-IID digits: FedAvg, FedProx, SCAFFOLD, FedAdam, FedYogi, rounds to 90%.

The digits-mlp app with McMahan et al.'s shards (sorted by label, 2 shards per client,
so most clients see two digits), 20 clients all training every round, 5 local epochs.
Prints one JSON object per strategy: ``{strategy, rounds_to_90, best_accuracy,
final_accuracy, seconds}`` (``rounds_to_90`` is null when 0.90 is never reached);
FedAvg, measured in the same run, is the reference. Writes
``runs/heterogeneity/curves.json`` and, with matplotlib, ``curves.png``.

    python benchmarks/heterogeneity.py [--rounds 60]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from plotting import plot_curves

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits-mlp"
STRATEGIES: dict[str, dict[str, Any]] = {
    "fedavg": {"name": "fedavg"},
    "fedprox": {"name": "fedprox", "proximal_mu": 0.01},
    "scaffold": {"name": "scaffold"},
    "fedadam": {"name": "fedadam", "server_learning_rate": 0.01},
    "fedyogi": {"name": "fedyogi", "server_learning_rate": 0.01},
}


def curve(strategy: dict[str, Any], rounds: int) -> list[float]:
    """Centralised accuracy after each round."""
    from fedhive.config import parse_config
    from fedhive.simulation.engine import simulate

    config = parse_config(
        {
            "run": {"app": "app:build", "rounds": rounds, "seed": 0},
            "strategy": strategy,
            "client": {"local_epochs": 5, "batch_size": 16, "learning_rate": 0.05},
            "app": {"num_clients": 20, "partition": "shards", "local_test_fraction": 0.0},
        }
    )
    result = simulate(config, base_dir=EXAMPLE)
    return [float(r.centralized["accuracy"]) for r in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    out = ROOT / "runs" / "heterogeneity"
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[float]] = {}
    for name, strategy in STRATEGIES.items():
        start = time.perf_counter()
        accuracies = curves[name] = curve(strategy, args.rounds)
        reached = next((i + 1 for i, a in enumerate(accuracies) if a >= 0.9), None)
        print(
            json.dumps(
                {
                    "strategy": name,
                    "rounds_to_90": reached,
                    "best_accuracy": round(max(accuracies), 4),
                    "final_accuracy": round(accuracies[-1], 4),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            ),
            flush=True,
        )
    (out / "curves.json").write_text(json.dumps(curves) + "\n")
    if plot_curves(
        curves,
        out / "curves.png",
        ylabel="centralised accuracy",
        title="digits, 2 label shards per client",
        ylim=(0, 1),
        target=0.9,
    ):
        print(json.dumps({"plot": str(out / "curves.png")}))


if __name__ == "__main__":
    main()
