"""The client pipeline's privacy stages: the device's budget, clipping, its noise share.

The server asks for them through ``ClientConfig.extra`` (see
:mod:`fedhive.strategy.private`): ``dp.clipping_norm`` (clip the update's L2 norm),
``dp.noise_std`` (distributed DP: add Gaussian noise before the update leaves the
device), ``dp.noise_multiplier`` (what the round releases).

A device with a :class:`~fedhive.core.messages.PrivacyBudget` keeps a ledger of what it
released in its persistent state (``privacy/ledger``; a deployed client also keeps it in
a file, so it survives restarts). Each private task is charged as one Gaussian
mechanism with the round's noise multiplier and **no** subsampling amplification: the
device does not rely on the server's sampling claims. A task that would take the
device past ``epsilon_max`` is refused before training (``PrivacyBudgetError``), and
the charge is recorded only when the update is released.
"""

from __future__ import annotations

import numpy as np

from fedhive.client.base import Context
from fedhive.core.messages import ClientConfig, FitTask
from fedhive.core.serde import RecordValue
from fedhive.core.weights import Weights
from fedhive.errors import ClientError, PrivacyBudgetError
from fedhive.privacy import GaussianEvent, Ledger, SecureNoise, SeededNoise, clip_l2, gaussian_noise
from fedhive.strategy.private import CLIPPING_NORM, NOISE_MULTIPLIER, NOISE_SEEDED, NOISE_STD

LEDGER_KEY = "privacy/ledger"
"""Client-state key of the device's privacy ledger (canonical JSON text)."""


def charge_budget(task: FitTask, state: dict[str, RecordValue]) -> Ledger | None:
    """The device's ledger with ``task`` charged, or None when nothing is to be charged.

    Raises:
        PrivacyBudgetError: the task would exceed the device's budget, or its ledger
            cannot be read (the device then refuses private tasks: fail closed).
    """
    budget = task.config.privacy_budget
    multiplier = task.config.extra.get(NOISE_MULTIPLIER)
    if budget is None or multiplier is None:
        return None
    if isinstance(multiplier, (bool, str)) or not float(multiplier) > 0:
        raise PrivacyBudgetError(f"{NOISE_MULTIPLIER} must be a number > 0, got {multiplier!r}")
    ledger = load_ledger(state)
    event = GaussianEvent(noise_multiplier=float(multiplier), sample_rate=1.0)
    return ledger.charge(
        task_id=f"round-{task.round}", round=task.round, event=event, budget=budget
    )


def load_ledger(state: dict[str, RecordValue]) -> Ledger:
    """The ledger kept in a client's state (empty when there is none)."""
    text = state.get(LEDGER_KEY)
    if text is None:
        return Ledger()
    if not isinstance(text, str):
        raise PrivacyBudgetError(f"the device's ledger ({LEDGER_KEY}) is not text: refused")
    try:
        return Ledger.from_bytes(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise PrivacyBudgetError(f"the device's ledger is unreadable ({exc}): refused") from None


def privatize(update: Weights, config: ClientConfig, context: Context) -> Weights:
    """``update`` clipped to ``dp.clipping_norm`` and, if asked, with ``dp.noise_std``
    noise added (in float64, returned in each tensor's dtype); as is when not asked."""
    norm = config.extra.get(CLIPPING_NORM)
    if norm is None:
        return update
    if isinstance(norm, (bool, str)):
        raise ClientError(f"{CLIPPING_NORM} must be a number, got {norm!r}")
    layout = update.layout()
    flat, _ = clip_l2(layout.flatten(update), float(norm))
    std = config.extra.get(NOISE_STD)
    if std is not None:
        if isinstance(std, (bool, str)) or not float(std) >= 0:
            raise ClientError(f"{NOISE_STD} must be a number >= 0, got {std!r}")
        seeded = bool(config.extra.get(NOISE_SEEDED, False))
        source = SeededNoise(context.seed.child("dp-noise")) if seeded else SecureNoise()
        flat = flat + gaussian_noise(flat.size, float(std), source)
    return layout.unflatten(np.asarray(flat, dtype=np.float64))
