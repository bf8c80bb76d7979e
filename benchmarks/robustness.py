"""Byzantine robustness on digits: final accuracy under 0/10/20/30% attackers.

For each attack (sign flip, scaling) and each aggregation rule (FedAvg's mean, median,
trimmed mean, Krum, Bulyan), runs the digits-mlp app (20 clients, Dirichlet(0.5),
20 rounds) with that fraction of malicious clients and prints one JSON object per run:
``{attack, fraction, aggregator, accuracy, clean_accuracy, seconds}``; the reference
is the same rule with no attacker, measured in the same run. Writes
``runs/robustness/robustness.json`` and, when matplotlib is installed, ``robustness.png``.

    python benchmarks/robustness.py [--rounds 20] [--clients 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from plotting import finish, pyplot

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits-mlp"
RULES: dict[str, dict[str, Any]] = {
    "mean": {"aggregator": "mean"},
    "median": {"aggregator": "median"},
    "trimmed_mean": {"aggregator": "trimmed_mean", "trim_fraction": 0.3},
    "krum": {"aggregator": "krum", "byzantine": 6, "multi": 4},
    "bulyan": {"aggregator": "bulyan", "byzantine": 4},
}
ATTACKS = {"sign_flip": {"kind": "sign_flip"}, "scaling": {"kind": "scaling", "scale": -10.0}}
FRACTIONS = (0.0, 0.1, 0.2, 0.3)


def run(rule: dict[str, Any], attack: dict[str, Any], fraction: float, args: Any) -> float:
    """Final centralised accuracy of one configuration."""
    from fedhive.config import parse_config
    from fedhive.simulation.engine import simulate

    data: dict[str, Any] = {
        "run": {"app": "app:build", "rounds": args.rounds, "seed": 0},
        "strategy": {"name": "fedavg", **rule},
        "client": {"local_epochs": 5, "batch_size": 16, "learning_rate": 0.1},
        "app": {"num_clients": args.clients, "alpha": 0.5, "local_test_fraction": 0.0},
    }
    if fraction > 0:
        data["attack"] = {**attack, "fraction": fraction}
    result = simulate(parse_config(data), base_dir=EXAMPLE)
    return float(result.history[-1].centralized["accuracy"])


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """Accuracy against attacker fraction, one panel per attack; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(5 * len(ATTACKS), 4), sharey=True)
    for ax, attack in zip(axes, ATTACKS, strict=True):
        for rule in RULES:
            points = [
                (r["fraction"], r["accuracy"])
                for r in rows
                if r["attack"] == attack and r["aggregator"] == rule
            ]
            ax.plot(*zip(*points, strict=True), marker="o", label=rule)
        ax.set(title=attack, xlabel="attacker fraction", ylabel="final accuracy", ylim=(0, 1))
    axes[0].legend()
    finish(fig, list(axes), path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    out = ROOT / "runs" / "robustness"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    clean = {name: run(rule, {}, 0.0, args) for name, rule in RULES.items()}
    for attack_name, attack in ATTACKS.items():
        for fraction in FRACTIONS:
            for name, rule in RULES.items():
                start = time.perf_counter()
                accuracy = clean[name] if fraction == 0 else run(rule, attack, fraction, args)
                row = {
                    "attack": attack_name,
                    "fraction": fraction,
                    "aggregator": name,
                    "accuracy": round(accuracy, 4),
                    "clean_accuracy": round(clean[name], 4),
                    "seconds": round(time.perf_counter() - start, 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    (out / "robustness.json").write_text(json.dumps(rows, indent=2) + "\n")
    if plot(rows, out / "robustness.png"):
        print(json.dumps({"plot": str(out / "robustness.png")}))


if __name__ == "__main__":
    main()
