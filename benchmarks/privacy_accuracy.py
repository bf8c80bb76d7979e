"""Accuracy vs epsilon of DP-FedAvg on digits-mlp (the table beside the privacy attack).

Runs ``examples/digits-mlp/config-dp.toml`` (central DP, 30% of 100 clients per round,
updates clipped to L2 norm 1) at several noise multipliers, plus the same run without
DP, and reports the final centralised accuracy and the epsilon spent at delta 1e-5.

    python benchmarks/privacy_accuracy.py [--rounds 20] [--noise-multipliers 0.1 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fedhive.config import parse_config
from fedhive.core._compat import tomllib
from fedhive.simulation.engine import simulate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-mlp"


def run(noise_multiplier: float | None, *, rounds: int, seed: int) -> dict[str, Any]:
    """One digits-mlp run: DP at ``noise_multiplier``, or none when it is None."""
    data = tomllib.loads((EXAMPLE / "config-dp.toml").read_text())
    data["run"].update(rounds=rounds, seed=seed)
    if noise_multiplier is None:
        del data["privacy"]
    else:
        data["privacy"].update(noise_multiplier=noise_multiplier, target_epsilon=float("inf"))
    started = time.perf_counter()
    result = simulate(parse_config(data), base_dir=EXAMPLE)
    last = result.history[-1]
    print(
        f"z={noise_multiplier}: accuracy {last.centralized['accuracy']:.3f}",
        file=sys.stderr,
        flush=True,
    )
    return {
        "noise_multiplier": noise_multiplier,
        "epsilon": last.privacy.epsilon if last.privacy else None,
        "delta": last.privacy.delta if last.privacy else None,
        "final_accuracy": round(last.centralized["accuracy"], 4),
        "best_accuracy": round(max(r.centralized["accuracy"] for r in result.history), 4),
        "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 1),
    }


def accuracy_rows(
    noise_multipliers: list[float], *, rounds: int = 20, seed: int = 0
) -> list[dict[str, Any]]:
    """The no-DP reference row, then one row per noise multiplier."""
    return [run(None, rounds=rounds, seed=seed)] + [
        run(z, rounds=rounds, seed=seed) for z in noise_multipliers
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--noise-multipliers", type=float, nargs="+", default=[0.01, 0.1, 0.5, 1.0, 2.0]
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/privacy_attack"))
    args = parser.parse_args()
    rows = accuracy_rows(args.noise_multipliers, rounds=args.rounds, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"example": "digits-mlp (config-dp.toml)", "rows": rows}, indent=2)
    (args.out / "privacy_accuracy.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
