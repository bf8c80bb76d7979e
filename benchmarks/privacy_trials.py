"""The experiment of benchmarks/privacy_attack.py: conditions, trials and JSON rows.

Each :class:`Condition` is one (protection, batch size); :func:`run_trial` puts one
target batch (and the other clients' batches) through every condition with the attack of
:mod:`inversion`, and :func:`attack_rows` runs all trials and turns the scores into the
JSON rows and derived settings.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from inversion import PIXELS, Client, Settings, assign, dp_release, idlg_label, invert, psnr


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
