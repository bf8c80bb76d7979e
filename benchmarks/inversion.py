"""The DLG gradient-inversion attack of privacy_attack.py: model, client, attack, scoring.

:class:`Settings` (what the benchmark runs), the federated :class:`Client` (the global
sigmoid MLP on scikit-learn's 8x8 digits and its differentiable local SGD update), the
client's DP release (``fedhive.privacy``'s clipping and Gaussian noise), the curious
server's Deep Leakage from Gradients inversion with the iDLG label trick and an optional
total-variation prior, and the scoring: best assignment of reconstructions to true
images, MSE and PSNR (peak 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

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
