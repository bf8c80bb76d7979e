"""FedBuff vs synchronous FedAvg under heavy-tailed device speeds: time to 90% accuracy.

The digits-mlp app (100 clients, Dirichlet(0.5) label skew, 5 local epochs) on
simulated devices whose slowness is Pareto(alpha) (``[devices]``; default alpha 1.2, so
a few devices are tens of times slower than the median one, plus per-task jitter).
Synchronous FedAvg, the reference measured in the same run, samples 10 clients per
round and waits for the slowest; FedBuff (Nguyen et al. 2022) keeps ``concurrency``
clients training and commits a version every ``buffer_size`` updates, weighting stale
ones by 1/sqrt(1 + staleness). For each seed, prints one JSON object per strategy
(simulated seconds, rounds or versions and client updates to the target accuracy, final
accuracy) and the speed-up ``sync_seconds / fedbuff_seconds``; then the median speed-up
over the seeds. Writes ``curves.json`` and, with matplotlib, ``accuracy_vs_time.png``
(the first seed) into ``--out``.

    python benchmarks/fedbuff.py [--quick] [--seeds 3] [--out runs/bench/fedbuff]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from plotting import finish, pyplot

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits-mlp"
TARGET = 0.9
CLIENT = {"local_epochs": 5, "batch_size": 16, "learning_rate": 0.1}
APP = {"num_clients": 100, "alpha": 0.5, "local_test_fraction": 0.0}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Both runs' configurations (the strategy tables, devices and lengths)."""
    devices = {
        "distribution": "pareto",
        "alpha": args.alpha,
        "seconds_per_epoch": 1.0,
        "jitter": 0.2,
    }
    return {
        "devices": devices,
        "sync": {"name": "fedavg", "fraction_fit": 0.1, "rounds": args.rounds},
        "fedbuff": {
            "name": "fedbuff",
            "concurrency": args.concurrency,
            "buffer_size": args.buffer_size,
            "staleness_exponent": 0.5,
            "versions": args.versions,
        },
        "client": CLIENT,
        "app": APP,
        "seeds": list(range(args.seeds)),
        "target_accuracy": TARGET,
    }


def run(strategy: dict[str, Any], rounds: int, setup: dict[str, Any], seed: int) -> dict[str, Any]:
    """One simulation: its accuracy and simulated clock after every round/version."""
    from fedhive.config import parse_config
    from fedhive.simulation.engine import simulate

    config = parse_config(
        {
            "run": {"app": "app:build", "rounds": rounds, "seed": seed},
            "strategy": strategy,
            "client": setup["client"],
            "devices": setup["devices"],
            "app": setup["app"],
        }
    )
    start = time.perf_counter()
    result = simulate(config, base_dir=EXAMPLE)
    history = result.history
    return {
        "clock": [float(r.clock or 0.0) for r in history],
        "accuracy": [float(r.centralized["accuracy"]) for r in history],
        "updates": [r.fit.succeeded for r in history],
        "staleness": [r.train.get("staleness_mean", 0.0) for r in history],
        "seconds": round(time.perf_counter() - start, 2),
    }


def report(name: str, curve: dict[str, Any]) -> dict[str, Any]:
    """Time, rounds/versions and client updates to the target; the final accuracy."""
    hit = next((i for i, a in enumerate(curve["accuracy"]) if a >= TARGET), None)
    return {
        "strategy": name,
        "simulated_seconds_to_target": None if hit is None else round(curve["clock"][hit], 1),
        "rounds_to_target": None if hit is None else hit + 1,
        "updates_to_target": None if hit is None else sum(curve["updates"][: hit + 1]),
        "final_accuracy": round(curve["accuracy"][-1], 4),
        "best_accuracy": round(max(curve["accuracy"]), 4),
        "simulated_seconds_total": round(curve["clock"][-1], 1),
        "mean_staleness": round(statistics.fmean(curve["staleness"]), 2),
        "wall_seconds": curve["seconds"],
    }


def plot(curves: dict[str, dict[str, Any]], path: Path, title: str) -> bool:
    """Accuracy against simulated time, one line per strategy; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(curve["clock"], curve["accuracy"], label=name)
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="simulated seconds", ylabel="centralised accuracy", title=title)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    finish(fig, [ax], path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, shorter runs")
    parser.add_argument("--rounds", type=int, default=None, help="sync rounds (default 80)")
    parser.add_argument("--versions", type=int, default=None, help="FedBuff versions (160)")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--buffer-size", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=1.2, help="Pareto shape of slowness")
    parser.add_argument("--seeds", type=int, default=3, help="run seeds 0 .. N-1")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "fedbuff")
    args = parser.parse_args()
    args.rounds = args.rounds or (40 if args.quick else 80)
    args.versions = args.versions or (60 if args.quick else 160)
    args.seeds = 1 if args.quick else args.seeds
    setup = settings(args)
    print(json.dumps({"settings": setup}), flush=True)
    runs = {
        "fedavg (sync, 10/round)": (
            {k: v for k, v in setup["sync"].items() if k != "rounds"},
            args.rounds,
        ),
        f"fedbuff (C={args.concurrency}, K={args.buffer_size})": (
            {k: v for k, v in setup["fedbuff"].items() if k != "versions"},
            args.versions,
        ),
    }
    curves: dict[int, dict[str, dict[str, Any]]] = {}
    ratios: list[float] = []
    for seed in setup["seeds"]:
        curves[seed] = {name: run(table, n, setup, seed) for name, (table, n) in runs.items()}
        rows = [report(name, curve) for name, curve in curves[seed].items()]
        for row in rows:
            print(json.dumps({"seed": seed, **row}), flush=True)
        sync_time, buff_time = (row["simulated_seconds_to_target"] for row in rows)
        ratio = None if not (sync_time and buff_time) else round(sync_time / buff_time, 2)
        ratios += [] if ratio is None else [ratio]
        print(json.dumps({"seed": seed, "speedup_sync_over_fedbuff": ratio}), flush=True)
    median = round(statistics.median(ratios), 2) if ratios else None
    print(json.dumps({"median_speedup_sync_over_fedbuff": median, "seeds_compared": len(ratios)}))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curves.json").write_text(json.dumps({"settings": setup, "curves": curves}) + "\n")
    title = f"digits, Pareto({args.alpha:g}) device slowness, seed 0"
    if plot(curves[0], args.out / "accuracy_vs_time.png", title):
        print(json.dumps({"plot": str(args.out / "accuracy_vs_time.png")}))


if __name__ == "__main__":
    main()
