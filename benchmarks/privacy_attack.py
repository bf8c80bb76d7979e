"""Gradient inversion by a curious server: no protection, client-side DP, secure aggregation.

An honest-but-curious server knows the global model, the learning rate and the local
training recipe, and sees what a client sends: the update ``w_new - w_old`` of one local
SGD step (``--local-steps``) on the client's batch of scikit-learn's 8x8 digits (pixels in
[0, 1]). It runs Deep Leakage from Gradients (Zhu, Liu and Han, NeurIPS 2019): dummy
images (and soft labels) optimised with L-BFGS until the update they would produce
matches the observed one, with the iDLG label trick for a batch of one (Zhao, Mopuri and
Bilen, 2020: the label is the one entry of the last bias that moves up) and an optional
total-variation prior (Geiping et al., "Inverting Gradients", NeurIPS 2020), a few random
restarts, the best kept by match loss. Reconstructions are clamped to [0, 1], paired with
the true images by the best assignment and scored by MSE and PSNR (peak 1.0).

Conditions, each at batch 1 and batch 8 over ``--trials`` target batches:

- ``none``: the server sees the client's exact update.
- ``dp``: the client clips its update to L2 norm C (the median unclipped update norm of
  random batches of that size) and adds N(0, (z C)^2) per coordinate, with
  ``fedhive.privacy``'s ``clip_l2`` and ``gaussian_noise``; the attacker knows C and
  clips its dummy update the same way. Noise is local, per client, before any sum.
- ``secagg``: the server sees only the sum of ``--clients`` clients' updates (the
  target's and the others' on other images) and inverts it as if it were the target's.
- ``secagg_joint``: a stronger attacker on the same sum reconstructs every client's
  batch at once; each target image is scored against its best-matching reconstruction
  among all of them (an upper bound: the server cannot tell which one is the target's).
- ``mean_image`` and ``random_image``: reference guesses (the dataset's mean digit,
  uniform noise) that use no update at all.

Also runs DP-FedAvg on digits-mlp at the same noise multipliers (accuracy vs epsilon,
:mod:`privacy_accuracy`; ``--accuracy-rounds 0`` skips it). Prints one JSON document
``{settings, rows, accuracy_vs_epsilon, plot}`` to stdout, progress to stderr, and
writes ``privacy_attack.json`` and (with matplotlib) ``privacy_attack.png`` to ``--out``.

    python benchmarks/privacy_attack.py [--quick] [--seed 0] [--out runs/bench/privacy_attack]

The attack lives in :mod:`inversion`, the conditions, trials and rows in
:mod:`privacy_trials`; this script holds the command line, the plot and the output.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from inversion import Settings, psnr
from plotting import finish, pyplot
from privacy_accuracy import accuracy_rows
from privacy_trials import Condition, attack_rows

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench" / "privacy_attack"


def plot(conditions: list[Condition], path: Path) -> bool:
    """Per condition, the first trial's reconstructions beside the originals, per batch size.

    False without matplotlib.
    """
    plt = pyplot()
    if plt is None:
        return False
    batches = sorted({c.batch for c in conditions})
    names = list(dict.fromkeys(c.name for c in conditions))
    by_key = {(c.name, c.batch): c for c in conditions}
    # Columns per batch size: reconstructions, a gap, originals, a gap before the next.
    columns = sum(2 * b + 2 for b in batches) - 1
    fig, axes = plt.subplots(
        len(names), columns, figsize=(0.5 * columns + 1.5, 0.55 * len(names) + 0.6), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for r, name in enumerate(names):
        col = 0
        for b in batches:
            condition = by_key.get((name, b))
            if condition is not None and condition.example is not None:
                reconstructions, originals = condition.example
                for i in range(b):
                    for offset, images in ((0, reconstructions), (b + 1, originals)):
                        ax = axes[r, col + offset + i]
                        ax.imshow(images[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
                axes[r, col].set_title(f"{psnr(float(np.mean(condition.mse))):.1f} dB", fontsize=7)
                if r == 0:
                    axes[r, col + b + 1].set_title(f"originals (b={b})", fontsize=7, loc="left")
            col += 2 * b + 2
        axes[r, 0].text(-0.3, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center")
    fig.suptitle("gradient inversion: reconstructions | originals (PSNR over all trials)")
    finish(fig, [], path)
    plt.close(fig)
    return True


def settings_from(args: argparse.Namespace) -> Settings:
    quick = {"trials": 1, "restarts": 2, "iterations": 200} if args.quick else {}
    chosen = {
        "trials": args.trials,
        "restarts": args.restarts,
        "iterations": args.iterations,
    }
    chosen = {k: v for k, v in chosen.items() if v is not None}
    return Settings(
        seed=args.seed,
        batch_sizes=tuple(args.batch_sizes),
        noise_multipliers=tuple(args.noise_multipliers),
        clients=args.clients,
        lr=args.lr,
        local_steps=args.local_steps,
        tv=args.tv,
        secagg_joint=not args.no_secagg_joint,
        **{**quick, **chosen},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Settings()
    parser.add_argument("--quick", action="store_true", help="1 trial, 2 restarts, 200 iterations")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(defaults.batch_sizes))
    parser.add_argument(
        "--noise-multipliers", type=float, nargs="+", default=list(defaults.noise_multipliers)
    )
    parser.add_argument("--clients", type=int, default=defaults.clients, help="SecAgg clients")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--local-steps", type=int, default=defaults.local_steps)
    parser.add_argument("--trials", type=int, help=f"target batches (default {defaults.trials})")
    parser.add_argument("--restarts", type=int, help=f"default {defaults.restarts}")
    parser.add_argument("--iterations", type=int, help=f"L-BFGS, default {defaults.iterations}")
    parser.add_argument("--tv", type=float, default=defaults.tv, help="total-variation weight")
    parser.add_argument("--no-secagg-joint", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--accuracy-rounds",
        type=int,
        default=20,
        help="digits-mlp DP-FedAvg rounds for the accuracy-vs-epsilon table (0: skip it)",
    )
    args = parser.parse_args()
    if args.clients < 2:
        parser.error("--clients must be at least 2")
    torch.set_num_threads(args.threads)
    settings = settings_from(args)
    start = time.perf_counter()
    rows, derived, conditions = attack_rows(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    image = args.out / "privacy_attack.png"
    accuracy = (  # DP-FedAvg on digits-mlp at the attack's noise levels, and without DP
        accuracy_rows(list(settings.noise_multipliers), rounds=args.accuracy_rounds)
        if args.accuracy_rounds > 0
        else []
    )
    document = {
        "settings": {**asdict(settings), **derived, "threads": args.threads},
        "rows": rows,
        "accuracy_vs_epsilon": accuracy,
        "seconds": round(time.perf_counter() - start, 1),
        "plot": str(image) if plot(conditions, image) else None,
    }
    text = json.dumps(document, indent=2)
    (args.out / "privacy_attack.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
