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
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plotting import finish, pyplot
from privacy_accuracy import accuracy_rows

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench" / "privacy_attack"
NUM_CLASSES = 10
PIXELS = 64
MSE_FLOOR = 1e-12  # PSNR is capped at 120 dB: reconstructions exact to float32 rounding


@dataclass(frozen=True)
class Settings:
    """What the benchmark runs; the JSON ``settings`` section is this plus derived values."""

    seed: int = 0
    batch_sizes: tuple[int, ...] = (1, 8)
    noise_multipliers: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    clients: int = 10
    lr: float = 0.1
    local_steps: int = 1
    hidden: int = 32
    trials: int = 3
    restarts: int = 4
    iterations: int = 300
    tv: float = 0.0
    calibration_batches: int = 64
    secagg_joint: bool = True


@dataclass
class Condition:
    """The scores of one (protection, batch size) over the trials."""

    protection: str
    batch: int
    noise_multiplier: float | None = None
    mse: list[float] = field(default_factory=list)  # one per target image, all trials
    trial_mse: list[float] = field(default_factory=list)
    match_loss: list[float] = field(default_factory=list)
    labels_right: list[bool] = field(default_factory=list)
    seconds: float = 0.0
    example: tuple[np.ndarray, np.ndarray] | None = None  # (reconstructions, originals)

    @property
    def name(self) -> str:
        if self.noise_multiplier is None:
            return self.protection
        return f"{self.protection} z={self.noise_multiplier:g}"


def log(message: str) -> None:
    print(f"[privacy_attack] {message}", file=sys.stderr, flush=True)


def psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, MSE_FLOOR))


# --- the federated client and what it sends ---------------------------------------------


class Client:
    """The global model, the data and the client's local training, differentiably."""

    def __init__(self, settings: Settings) -> None:
        from sklearn.datasets import load_digits

        from fedhive.core.rng import run_stream

        digits = load_digits()
        self.images = torch.tensor(digits.data / 16.0, dtype=torch.float32)
        self.labels = torch.tensor(digits.target, dtype=torch.int64)
        self.stream = run_stream(settings.seed)
        self.settings = settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.stream.child("init").torch_seed)
            # Sigmoid, not ReLU: the attack differentiates the gradient, so the model must
            # be twice differentiable with a non-zero second derivative.
            self.model = nn.Sequential(
                nn.Linear(PIXELS, settings.hidden),
                nn.Sigmoid(),
                nn.Linear(settings.hidden, NUM_CLASSES),
            )
        self.names = [name for name, _ in self.model.named_parameters()]
        self.weights = [p.detach().clone() for p in self.model.parameters()]
        self.size = sum(w.numel() for w in self.weights)
        # The last parameter is the output bias: its update is -lr * (softmax - onehot).
        self.last_bias = slice(self.size - self.weights[-1].numel(), self.size)

    def update(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Flat ``w_new - w_old`` after local SGD; differentiable in images and targets.

        ``targets`` are class indices or (soft) class probabilities, one row per image.
        """
        start = [w.detach().requires_grad_(True) for w in self.weights]
        params = start
        for _ in range(self.settings.local_steps):
            logits = torch.func.functional_call(
                self.model, dict(zip(self.names, params, strict=True)), (images,)
            )
            loss = nn.functional.cross_entropy(logits, targets)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            params = [p - self.settings.lr * g for p, g in zip(params, grads, strict=True)]
        return torch.cat([(p - s.detach()).reshape(-1) for p, s in zip(params, start, strict=True)])

    def exact_update(self, indices: np.ndarray) -> torch.Tensor:
        index = torch.from_numpy(indices)
        return self.update(self.images[index], self.labels[index]).detach()

    def clipping_norm(self, batch: int) -> float:
        """C for this batch size: the median unclipped update norm over random batches."""
        rng = self.stream.child("calibration").child(batch).numpy()
        norms = [
            float(self.exact_update(rng.choice(len(self.images), batch, replace=False)).norm())
            for _ in range(self.settings.calibration_batches)
        ]
        return float(np.median(norms))


def dp_release(
    update: torch.Tensor, clip_norm: float, z: float, label: str, client: Client
) -> torch.Tensor:
    """The client's DP step: clip to ``clip_norm``, add N(0, (z * clip_norm)^2) per entry."""
    from fedhive.privacy import SeededNoise, clip_l2, gaussian_noise

    clipped, _ = clip_l2(update.double().numpy(), clip_norm)
    noise = gaussian_noise(clipped.size, z * clip_norm, SeededNoise(client.stream.child(label)))
    return torch.from_numpy(clipped + noise).float()


# --- the server's attack ------------------------------------------------------------------


def clip_torch(update: torch.Tensor, clip_norm: float | None) -> torch.Tensor:
    """The attacker's differentiable copy of the client's clipping."""
    if clip_norm is None:
        return update
    return update * torch.clamp(clip_norm / (update.norm() + 1e-12), max=1.0)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    grid = images.reshape(-1, 8, 8)
    return (grid[:, 1:] - grid[:, :-1]).abs().mean() + (
        grid[:, :, 1:] - grid[:, :, :-1]
    ).abs().mean()


def invert(
    client: Client,
    observed: torch.Tensor,
    *,
    clients: int,
    batch: int,
    label: int | None,
    clip_norm: float | None,
    generator: torch.Generator,
) -> tuple[float, torch.Tensor]:
    """DLG: ``clients * batch`` dummy images whose summed updates match ``observed``.

    With ``label`` (iDLG, batch 1) the labels are fixed; otherwise soft labels are
    optimised too. Returns the best restart's relative match loss and its images,
    clamped to [0, 1].
    """
    settings = client.settings
    scale = observed.pow(2).sum().clamp_min(1e-30)
    best_loss, best = math.inf, torch.full((clients * batch, PIXELS), 0.5)
    for _ in range(settings.restarts):
        dummy = torch.rand(clients, batch, PIXELS, generator=generator).requires_grad_(True)
        logits = torch.randn(clients, batch, NUM_CLASSES, generator=generator)
        logits.requires_grad_(label is None)

        def loss_of(dummy: torch.Tensor = dummy, logits: torch.Tensor = logits) -> torch.Tensor:
            if label is None:
                targets = logits.softmax(-1)
            else:
                onehot = nn.functional.one_hot(torch.tensor(label), NUM_CLASSES)
                targets = onehot.float().expand_as(logits)
            guess = sum(
                clip_torch(client.update(dummy[k], targets[k]), clip_norm) for k in range(clients)
            )
            loss = (guess - observed).pow(2).sum() / scale
            return loss + settings.tv * total_variation(dummy) if settings.tv else loss

        variables = [dummy] if label is not None else [dummy, logits]
        optimizer = torch.optim.LBFGS(
            variables,
            lr=1.0,
            max_iter=settings.iterations,
            history_size=100,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
        )

        def closure(optimizer: torch.optim.LBFGS = optimizer, loss_of: Any = loss_of) -> Any:
            optimizer.zero_grad()
            loss = loss_of()
            loss.backward()
            return loss

        optimizer.step(closure)
        loss = float(loss_of().detach())
        if math.isfinite(loss) and loss < best_loss:
            best_loss, best = loss, dummy.detach().reshape(-1, PIXELS).clamp(0.0, 1.0)
    return best_loss, best


def idlg_label(observed: torch.Tensor, client: Client) -> int:
    """iDLG: the update of the output bias is -lr (p - onehot), positive only at the label."""
    return int(observed[client.last_bias].argmax())


def assign(reconstructions: torch.Tensor, truth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Pair each true image with its own reconstruction, minimising the total MSE.

    Returns the per-image MSE and the reconstruction paired with each true image.
    """
    cost = ((truth[:, None] - reconstructions[None]) ** 2).mean(-1).numpy().astype(np.float64)
    try:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
    except ImportError:  # greedy: the closest remaining pair first
        rows, cols, free = [], [], cost.copy()
        for _ in range(len(truth)):
            i, j = np.unravel_index(np.argmin(free), free.shape)
            rows.append(int(i))
            cols.append(int(j))
            free[i, :], free[:, j] = np.inf, np.inf
        rows, cols = np.array(rows), np.array(cols)
    order = np.argsort(rows)
    rows, cols = rows[order], cols[order]
    return cost[rows, cols], reconstructions[torch.from_numpy(cols)].numpy()


# --- the experiment ---------------------------------------------------------------------


def conditions_for(batch: int, settings: Settings) -> list[Condition]:
    found = [Condition("none", batch)]
    found += [Condition("dp", batch, z) for z in settings.noise_multipliers]
    found.append(Condition("secagg", batch))
    if settings.secagg_joint:
        found.append(Condition("secagg_joint", batch))
    found += [Condition("mean_image", batch), Condition("random_image", batch)]
    return found


def run_trial(
    client: Client,
    conditions: list[Condition],
    batch: int,
    trial: int,
    clip_norm: float,
) -> None:
    """One target batch (and the other clients' batches) through every condition."""
    settings = client.settings
    stream = client.stream.child("trial").child(batch).child(trial)
    rng = stream.child("images").numpy()
    chosen = rng.choice(len(client.images), settings.clients * batch, replace=False)
    per_client = chosen.reshape(settings.clients, batch)
    target = per_client[0]
    truth = client.images[torch.from_numpy(target)]
    exact = client.exact_update(target)
    generator = torch.Generator().manual_seed(stream.child("attack").torch_seed)
    mean_image = client.images.mean(0, keepdim=True)

    for condition in conditions:
        start = time.perf_counter()
        observed, clip, clients, label = exact, None, 1, None
        if condition.protection == "dp":
            assert condition.noise_multiplier is not None
            z = condition.noise_multiplier
            observed = dp_release(exact, clip_norm, z, f"dp/{batch}/{trial}/{z}", client)
            clip = clip_norm
        elif condition.protection.startswith("secagg"):
            observed = torch.stack([client.exact_update(ids) for ids in per_client]).sum(0)
            if condition.protection == "secagg_joint":
                clients = settings.clients
        if condition.protection == "mean_image":
            guesses, loss = mean_image.expand(batch, -1), math.nan
        elif condition.protection == "random_image":
            guesses, loss = torch.rand(batch, PIXELS, generator=generator), math.nan
        else:
            if batch == 1 and clients == 1:
                label = idlg_label(observed, client)
                condition.labels_right.append(label == int(client.labels[target[0]]))
            loss, guesses = invert(
                client,
                observed,
                clients=clients,
                batch=batch,
                label=label,
                clip_norm=clip,
                generator=generator,
            )
        errors, paired = assign(guesses, truth)
        condition.mse.extend(float(e) for e in errors)
        condition.trial_mse.append(float(errors.mean()))
        condition.match_loss.append(loss)
        condition.seconds += time.perf_counter() - start
        if condition.example is None:
            condition.example = (paired, truth.numpy())
        log(
            f"batch {batch} trial {trial + 1}/{settings.trials} {condition.name}: "
            f"psnr {psnr(float(errors.mean())):.1f} dB "
            f"({time.perf_counter() - start:.1f} s)"
        )


def attack_rows(settings: Settings) -> tuple[list[dict[str, Any]], dict[str, Any], list[Condition]]:
    """Run every condition; return the JSON rows, derived settings and the conditions."""
    client = Client(settings)
    clip_norms: dict[str, float] = {}
    conditions: list[Condition] = []
    for batch in settings.batch_sizes:
        clip_norm = clip_norms[str(batch)] = client.clipping_norm(batch)
        log(f"batch {batch}: clipping norm C = {clip_norm:.4g} (median update norm)")
        found = conditions_for(batch, settings)
        for trial in range(settings.trials):
            run_trial(client, found, batch, trial, clip_norm)
        conditions += found
    rows = [row_of(c) for c in conditions]
    derived = {
        "model": f"mlp {PIXELS}-{settings.hidden}-10 sigmoid",
        "parameters": client.size,
        "clipping_norm": clip_norms,
        "noise_std": {
            batch: [round(z * c, 6) for z in settings.noise_multipliers]
            for batch, c in clip_norms.items()
        },
        # ||noise|| / C is about z * sqrt(parameters): the noise-to-signal ratio of DP.
        "noise_to_clip_ratio": [
            round(z * math.sqrt(client.size), 3) for z in settings.noise_multipliers
        ],
        "attack": "DLG (L2 match, L-BFGS), iDLG labels at batch 1 else soft labels",
        "psnr_peak": 1.0,
    }
    return rows, derived, conditions


def row_of(condition: Condition) -> dict[str, Any]:
    mse = float(np.mean(condition.mse))
    row: dict[str, Any] = {"protection": condition.protection, "batch": condition.batch}
    if condition.noise_multiplier is not None:
        row["noise_multiplier"] = condition.noise_multiplier
    row |= {
        "mse": float(f"{mse:.4g}"),
        "psnr": round(psnr(mse), 2),
        "psnr_trials": [round(psnr(m), 2) for m in condition.trial_mse],
    }
    losses = [loss for loss in condition.match_loss if math.isfinite(loss)]
    if losses:
        row["match_loss"] = float(f"{np.median(losses):.3g}")
    if condition.labels_right:
        row["label_accuracy"] = round(float(np.mean(condition.labels_right)), 3)
    row["seconds"] = round(condition.seconds, 2)
    return row


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
