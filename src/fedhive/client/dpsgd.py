"""Sample-level DP-SGD for the torch adapter, through Opacus (Abadi et al., CCS 2016).

A client that needs record-level guarantees trains with per-sample gradient clipping
and Gaussian noise on every step. The server (or the app) asks for it in
``ClientConfig.extra``:

- ``"dpsgd.noise_multiplier"`` (> 0) and ``"dpsgd.max_grad_norm"`` (> 0).

Each step is one sampled Gaussian mechanism with ``q = batch_size / num_examples``;
the client composes its steps (over all its rounds, kept in ``Context.state``) with
fedhive's accountant and reports ``dpsgd_epsilon`` at ``dpsgd.delta`` (default 1e-5)
as a fit metric. Batches are shuffled fixed-size batches, not Poisson samples: the
accounting treats them as Poisson subsampling, the usual approximation (Opacus's own
default loaders differ here). Opacus's ``secure_mode`` needs torchcsprng, which is not
available, so the noise comes from torch's generator seeded by the task: fine for
research and simulation, not a deployment-grade source of secret noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fedhive.client.base import Context
from fedhive.core.config import check_real
from fedhive.core.messages import ClientConfig
from fedhive.errors import MissingDependencyError
from fedhive.privacy import GaussianEvent, epsilon

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("DP-SGD needs PyTorch: pip install 'fedhive[torch]'") from exc

NOISE_MULTIPLIER = "dpsgd.noise_multiplier"
MAX_GRAD_NORM = "dpsgd.max_grad_norm"
DELTA = "dpsgd.delta"
_STEPS = "dpsgd/steps"  # client-state key: DP-SGD steps taken so far


@dataclass(frozen=True)
class DpSgd:
    """The DP-SGD settings of one fit."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float = 1e-5


def settings(config: ClientConfig) -> DpSgd | None:
    """The DP-SGD settings in ``config.extra``; None when not asked for.

    Raises:
        ConfigError: a value is missing or out of range.
    """
    if NOISE_MULTIPLIER not in config.extra and MAX_GRAD_NORM not in config.extra:
        return None
    z = config.extra.get(NOISE_MULTIPLIER)
    norm = config.extra.get(MAX_GRAD_NORM)
    delta = config.extra.get(DELTA, 1e-5)
    check_real(NOISE_MULTIPLIER, z, low=0, low_open=True)
    check_real(MAX_GRAD_NORM, norm, low=0, low_open=True)
    check_real(DELTA, delta, low=0, high=1, low_open=True, high_open=True)
    return DpSgd(float(z), float(norm), float(delta))  # type: ignore[arg-type]


@contextmanager
def private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dp: DpSgd,
    *,
    batch_size: int,
    seed: int,
) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
    """``model`` wrapped for per-sample gradients and ``optimizer`` made private."""
    try:
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer
    except ImportError as exc:
        raise MissingDependencyError(
            "DP-SGD needs Opacus: pip install 'fedhive[opacus]' (with torch pinned)"
        ) from exc
    wrapped = GradSampleModule(model)
    private_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    try:
        with warnings.catch_warnings():
            # Opacus's hooks on a first layer whose input needs no gradient: harmless.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            yield wrapped, private_optimizer
    finally:
        wrapped._close()  # removes the hooks and per-sample gradients


def account(context: Context, dp: DpSgd, *, steps: int, sample_rate: float) -> float:
    """Add this fit's steps to the client's total; return its epsilon so far."""
    total = int(context.state.get(_STEPS, 0)) + steps
    context.state[_STEPS] = total
    if total == 0:
        return 0.0
    event = GaussianEvent(
        noise_multiplier=dp.noise_multiplier, sample_rate=min(1.0, sample_rate), count=total
    )
    return epsilon([event], target_delta=dp.delta)
