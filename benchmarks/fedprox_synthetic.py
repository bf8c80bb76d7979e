"""FedProx's Synthetic(1, 1) experiment: FedAvg vs FedProx (mu = 1), 0% and 90% stragglers.

The set-up of Li et al., MLSys 2020 (Sec. 5): 30 devices, multinomial logistic
regression, 10 devices per round, lr 0.01, batch 10, 20 local epochs; stragglers run a
random number of epochs in [1, 20]; FedAvg drops them, FedProx keeps their partial
work. Prints one JSON object per configuration with the global training loss after the
last round (FedAvg without stragglers, in the same run, is the reference) and writes
``runs/fedprox-synthetic/curves.json`` and, with matplotlib, ``curves.png``.

    python benchmarks/fedprox_synthetic.py [--rounds 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from plotting import plot_curves

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "synthetic-logreg"
CONFIGS: dict[str, dict[str, Any]] = {
    "fedavg, 0% stragglers": {"strategy": {"name": "fedavg"}, "stragglers": {}},
    "fedavg, 90% stragglers (dropped)": {
        "strategy": {"name": "fedavg"},
        "stragglers": {"fraction": 0.9, "drop": True},
    },
    "fedprox mu=1, 0% stragglers": {
        "strategy": {"name": "fedprox", "proximal_mu": 1.0},
        "stragglers": {},
    },
    "fedprox mu=1, 90% stragglers (kept)": {
        "strategy": {"name": "fedprox", "proximal_mu": 1.0},
        "stragglers": {"fraction": 0.9},
    },
    "scaffold, 0% stragglers": {"strategy": {"name": "scaffold"}, "stragglers": {}},
}


def curve(setting: dict[str, Any], rounds: int) -> list[float]:
    """Global training loss after each round."""
    from fedhive.config import parse_config
    from fedhive.simulation.engine import simulate

    config = parse_config(
        {
            "run": {"app": "app:build", "rounds": rounds, "seed": 0},
            "strategy": {**setting["strategy"], "fraction_fit": 1 / 3},
            "client": {"local_epochs": 20, "batch_size": 10, "learning_rate": 0.01},
            "stragglers": setting["stragglers"],
            "app": {"alpha": 1.0, "beta": 1.0, "num_devices": 30},
        }
    )
    result = simulate(config, base_dir=EXAMPLE)
    return [float(r.centralized["train_loss"]) for r in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    out = ROOT / "runs" / "fedprox-synthetic"
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[float]] = {}
    for name, setting in CONFIGS.items():
        start = time.perf_counter()
        losses = curves[name] = curve(setting, args.rounds)
        print(
            json.dumps(
                {
                    "config": name,
                    "final_train_loss": round(losses[-1], 4),
                    "min_train_loss": round(min(losses), 4),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            ),
            flush=True,
        )
    (out / "curves.json").write_text(json.dumps(curves) + "\n")
    if plot_curves(curves, out / "curves.png", ylabel="training loss", title="Synthetic(1, 1)"):
        print(json.dumps({"plot": str(out / "curves.png")}))


if __name__ == "__main__":
    main()
