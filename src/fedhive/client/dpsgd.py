"""Sample-level DP-SGD for the torch adapter, through Opacus (Abadi et al., CCS 2016).

A client that needs record-level guarantees trains with per-sample gradient clipping
and Gaussian noise on every step. The server (or the app) asks for it in
``ClientConfig.extra``:

- ``"dpsgd.noise_multiplier"`` (> 0) and ``"dpsgd.max_grad_norm"`` (> 0).

Each step is one sampled Gaussian mechanism with ``q = batch_size / num_examples``. A
fit's steps are one :class:`~fedhive.privacy.GaussianEvent` that the client hands the
pipeline (``Context.released``): a device with a privacy budget charges it to its ledger
before the update leaves (a record-level event; the ledger then bounds record-level
privacy). The fit reports that event's epsilon at ``dpsgd.delta`` (default 1e-5) as
metric ``dpsgd_epsilon``. Batches are shuffled fixed-size batches, not Poisson samples:
the accounting treats them as Poisson subsampling, the usual approximation (Opacus's own
default loaders differ here).

Noise: Opacus's ``secure_mode`` needs torchcsprng, which is not available, so the noise
comes from a ``torch.Generator`` (Mersenne Twister). In simulation it is seeded from the
task's stream (reproducible); otherwise from 63 bits of ``os.urandom``
(:meth:`~fedhive.client.base.Context.noise_seed`), never from a seed the server knows.

Only :func:`private` needs torch and Opacus; the rest imports without them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedhive.client.base import Context
from fedhive.core.config import check_real
from fedhive.core.messages import ClientConfig
from fedhive.errors import MissingDependencyError
from fedhive.privacy import GaussianEvent, epsilon

if TYPE_CHECKING:
    import torch
    from torch import nn

NOISE_MULTIPLIER = "dpsgd.noise_multiplier"
MAX_GRAD_NORM = "dpsgd.max_grad_norm"
DELTA = "dpsgd.delta"


@dataclass(frozen=True)
class DpSgd:
    """The DP-SGD settings of one fit."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float = 1e-5


def asked(config: ClientConfig) -> bool:
    """Whether ``config`` asks for DP-SGD (valid settings or not)."""
    return NOISE_MULTIPLIER in config.extra or MAX_GRAD_NORM in config.extra


def settings(config: ClientConfig) -> DpSgd | None:
    """The DP-SGD settings in ``config.extra``; None when not asked for.

    Raises:
        ConfigError: a value is missing or out of range.
    """
    if not asked(config):
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
    """``model`` wrapped for per-sample gradients and ``optimizer`` made private, its
    noise drawn from a generator seeded with ``seed`` (see the module docstring)."""
    try:
        import torch
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
    """Hand this fit's ``steps`` to the pipeline as one event; return their epsilon."""
    if steps == 0:
        return 0.0
    event = GaussianEvent(
        noise_multiplier=dp.noise_multiplier, sample_rate=min(1.0, sample_rate), count=steps
    )
    context.released.append(event)
    return epsilon([event], target_delta=dp.delta)
