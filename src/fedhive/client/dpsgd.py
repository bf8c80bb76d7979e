"""Sample-level DP-SGD for the torch adapter, through Opacus (Abadi et al., CCS 2016).

A client that needs record-level guarantees trains with per-sample gradient clipping
and Gaussian noise on every step. The server (or the app: ``[client] dpsgd = {...}``)
asks for it with a :class:`~fedhive.core.extensions.DpSgd` extension of the client
config (noise multiplier, per-sample clipping norm, reporting delta).

Each step is one sampled Gaussian mechanism with ``q = batch_size / num_examples``. A
fit's steps are one :class:`~fedhive.privacy.GaussianEvent` that the client hands the
pipeline (``Context.released``): a device with a privacy budget charges it to its ledger
before the update leaves (a record-level event; the ledger then bounds record-level
privacy). The fit reports that event's epsilon at ``DpSgd.delta`` (default 1e-5) as
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
from typing import TYPE_CHECKING

from fedhive.client.base import Context
from fedhive.core.extensions import DpSgd
from fedhive.errors import MissingDependencyError
from fedhive.privacy import GaussianEvent, epsilon

if TYPE_CHECKING:
    import torch
    from torch import nn


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
