"""Framework overhead of a fedhive simulation against a bare PyTorch loop, same run.

Each workload runs the same federated computation twice: through ``fedhive simulate``
(the digits-mlp example app, on a backend) and through a bare loop written with plain
Python and PyTorch (no framework: load weights, SGD, weighted average, evaluate). Both
use the same data split, partition, initial model, selection and per-client shuffling
seeds, one torch thread per process, and run in fresh subprocesses so that their peak
RSS is their own. Prints one JSON object per workload and backend:
``{workload, backend, fedhive_s, bare_s, ratio, fedhive_accuracy, bare_accuracy,
peak_rss_mb, bare_peak_rss_mb}`` (times: best of ``--repeats``; RSS of the whole process
tree).

    python benchmarks/simulation_overhead.py [--workloads W1 W2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits-mlp"

WORKLOADS: dict[str, dict[str, Any]] = {
    # digits, 100 clients Dirichlet(0.5), every client every round, 5 epochs, batch 16.
    "W1": {"clients": 100, "fraction": 1.0, "epochs": 5, "lr": 0.1, "batch": 16, "rounds": 30},
    # the same model over 1000 clients, 10% per round, batch 8, 50 rounds.
    "W2": {"clients": 1000, "fraction": 0.1, "epochs": 5, "lr": 0.1, "batch": 8, "rounds": 50},
}
SEED = 0


def fedhive_run(w: dict[str, Any], backend: str) -> tuple[float, float]:
    """Time one fedhive simulation of workload ``w``; return (seconds, accuracy)."""
    from fedhive.config import parse_config
    from fedhive.simulation.engine import simulate

    config = parse_config(
        {
            "run": {"app": "app:build", "rounds": w["rounds"], "seed": SEED},
            "strategy": {"name": "fedavg", "fraction_fit": w["fraction"]},
            "client": {
                "local_epochs": w["epochs"],
                "batch_size": w["batch"],
                "learning_rate": w["lr"],
            },
            "simulation": {"backend": backend, "workers": 2},
            "app": {"num_clients": w["clients"], "alpha": 0.5, "local_test_fraction": 0.0},
        }
    )
    start = time.perf_counter()
    result = simulate(config, base_dir=EXAMPLE)
    seconds = time.perf_counter() - start
    return seconds, result.history[-1].centralized["accuracy"]


def bare_run(w: dict[str, Any]) -> tuple[float, float]:
    """The same computation as plain Python + PyTorch; return (seconds, accuracy)."""
    import numpy as np
    import torch

    # Data and seeds come from the same helpers so both sides see identical inputs.
    from fedhive.core.rng import run_stream
    from fedhive.simulation.datasets import load_digits
    from fedhive.simulation.partition import dirichlet

    sys.path.insert(0, str(EXAMPLE))
    from app import make_model  # type: ignore[import-not-found]

    start = time.perf_counter()
    torch.set_num_threads(1)
    app = run_stream(SEED).child("app")
    data = load_digits(test_fraction=0.2, rng=app.child("split").numpy())
    parts = dirichlet(data.y_train, w["clients"], 0.5, app.child("partition").numpy())
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    shards = [(x[torch.from_numpy(i.copy())], y[torch.from_numpy(i.copy())]) for i in parts.indices]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(app.child("init").torch_seed)
        model = make_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    ids = [f"client-{i:04d}" for i in range(w["clients"])]
    accuracy = 0.0
    for rnd in range(1, w["rounds"] + 1):
        stream = run_stream(SEED).child("round").child(rnd)
        count = max(1, int(np.ceil(w["fraction"] * len(ids))))
        if count < len(ids):
            chosen = stream.child("select-fit").numpy().choice(len(ids), count, replace=False)
            selected = sorted(chosen.tolist())
        else:
            selected = list(range(len(ids)))
        total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in state.items()}
        examples = 0
        for c in selected:
            cx, cy = shards[c]
            model.load_state_dict(state)
            seed = stream.child("client").child(ids[c]).child("fit").torch_seed
            bare_local_training(model, cx, cy, w, seed)
            for k, v in model.state_dict().items():
                total[k] += len(cy) * v.double()
            examples += len(cy)
        state = {k: (v / examples).to(state[k].dtype) for k, v in total.items()}
        model.load_state_dict(state)
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).double().mean().item()
    return time.perf_counter() - start, accuracy


def bare_local_training(model: Any, cx: Any, cy: Any, w: dict[str, Any], seed: int) -> None:
    """Plain SGD epochs over one client's tensors, shuffled by a seeded generator."""
    import torch
    from torch import nn

    opt = torch.optim.SGD(model.parameters(), lr=w["lr"])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(w["epochs"]):
        if len(cy) <= w["batch"]:  # one batch: order is irrelevant (as in TorchClient)
            batches = [(cx, cy)]
        else:
            order = torch.randperm(len(cy), generator=gen)
            batches = [
                (cx[order[b : b + w["batch"]]], cy[order[b : b + w["batch"]]])
                for b in range(0, len(cy), w["batch"])
            ]
        for bx, by in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(model(bx), by).backward()
            opt.step()


def peak_rss_mb() -> float:
    """Peak RSS of this process plus its (reaped) children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def one(workload: str, method: str) -> dict[str, Any]:
    """Run one (workload, method) in this process and report it."""
    w = WORKLOADS[workload]
    # Imports happen before either clock starts: both sides pay them alike.
    import sklearn.datasets  # noqa: F401
    import torch  # noqa: F401

    import fedhive.simulation  # noqa: F401

    if method == "bare":
        seconds, accuracy = bare_run(w)
    else:
        seconds, accuracy = fedhive_run(w, method)
    return {"seconds": seconds, "accuracy": accuracy, "peak_rss_mb": round(peak_rss_mb(), 1)}


def measure(workload: str, method: str) -> dict[str, Any]:
    """Run one (workload, method) in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", workload, method],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument("--backends", nargs="+", default=["local", "process"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("WORKLOAD", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    for workload in args.workloads:
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in ["bare", *args.backends]}
        for _ in range(args.repeats):  # interleaved, so drift hits both sides alike
            for method, results in runs.items():
                results.append(measure(workload, method))
        bare = min(runs["bare"], key=lambda r: r["seconds"])
        for backend in args.backends:
            best = min(runs[backend], key=lambda r: r["seconds"])
            print(
                json.dumps(
                    {
                        "workload": workload,
                        "backend": backend,
                        "fedhive_s": round(best["seconds"], 3),
                        "bare_s": round(bare["seconds"], 3),
                        "ratio": round(best["seconds"] / bare["seconds"], 3),
                        "fedhive_accuracy": round(best["accuracy"], 4),
                        "bare_accuracy": round(bare["accuracy"], 4),
                        "peak_rss_mb": best["peak_rss_mb"],
                        "bare_peak_rss_mb": bare["peak_rss_mb"],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
