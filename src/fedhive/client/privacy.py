"""The client pipeline's privacy stages: the device's budget, clipping, its noise.

The server asks for them with a :class:`~fedhive.core.extensions.ClipAndNoise` in the
client config (see :mod:`fedhive.strategy.private`): its ``clipping_norm`` (clip the
update's L2 norm) and ``noise_std`` (distributed DP: add Gaussian noise before the
update leaves the device). :func:`mechanism` turns that ask into what the device does.

A device with a :class:`~fedhive.core.messages.PrivacyBudget` does not take the
server's word for anything. It clips to the smaller of its own and the server's
clipping norm C, adds noise of std sigma = max(the server's ``noise_std``, its own
``min_noise_multiplier`` * C), and charges its ledger ``GaussianEvent(sigma / C, q=1)``
(no credit for the server's sampling; the server's ``noise_multiplier`` is ignored).
A mechanism the client applied itself (DP-SGD's steps, through
``Context.released``) is charged too. A release with no clipped-and-noised mechanism at
all would cost epsilon = infinity, so it is refused.

The ledger lives in the client's persistent state (``privacy/ledger``; a deployed
client also keeps it in a file, so it survives restarts), one entry per release under
the task's run and task id (:class:`~fedhive.client.base.TaskOrigin`). A task that
would take the device past ``epsilon_max`` is refused before training when its cost is
known then, else before release (``PrivacyBudgetError``); the charge is recorded only
when the update is released.

Noise is seeded (reproducible) only in simulation, and only if the task's
``ClipAndNoise.seeded`` is true; a deployed device always draws it from the OS's CSPRNG,
whatever the task says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedhive.client.base import Context, TaskOrigin
from fedhive.core.extensions import ClipAndNoise, DpSgd
from fedhive.core.messages import ClientConfig, FitTask
from fedhive.core.serde import RecordValue
from fedhive.core.weights import Weights
from fedhive.errors import PrivacyBudgetError
from fedhive.privacy import GaussianEvent, Ledger, SecureNoise, clip_l2, gaussian_noise

LEDGER_KEY = "privacy/ledger"
"""Client-state key of the device's privacy ledger (canonical JSON text)."""


@dataclass(frozen=True)
class Mechanism:
    """What the device does to an update before it leaves: clip it, then add noise.

    Attributes:
        clipping_norm: the L2 norm the update is clipped to; None: not clipped.
        noise_std: the std of the Gaussian noise added (0: none; never without clipping).
        seeded: the noise may come from the task's seed (simulation only).
    """

    clipping_norm: float | None
    noise_std: float
    seeded: bool

    @property
    def event(self) -> GaussianEvent | None:
        """The Gaussian mechanism this is, with no sampling credit; None without both
        clipping and noise (the release is then not private), or when their ratio is
        not a positive finite number (refused rather than accounted)."""
        if self.clipping_norm is None:
            return None
        multiplier = self.noise_std / self.clipping_norm
        if not 0 < multiplier < math.inf:
            return None
        return GaussianEvent(noise_multiplier=multiplier, sample_rate=1.0)


def mechanism(config: ClientConfig) -> Mechanism:
    """The clipping and noise applied under ``config``: the server's ask, tightened by
    the device's budget (its own clipping norm and noise floor) when it has one."""
    ask = config.extension(ClipAndNoise)
    norm = None if ask is None else ask.clipping_norm
    std = 0.0 if ask is None else ask.noise_std
    budget = config.privacy_budget
    if budget is not None:
        norms = [n for n in (norm, budget.clipping_norm) if n is not None]
        norm = min(norms) if norms else None
        if norm is not None and budget.min_noise_multiplier is not None:
            std = max(std, budget.min_noise_multiplier * norm)
    seeded = True if ask is None else ask.seeded
    return Mechanism(norm, std if norm is not None else 0.0, seeded)


def check_budget(
    task: FitTask, state: dict[str, RecordValue], *, origin: TaskOrigin
) -> list[GaussianEvent]:
    """The events the device's own clipping and noise will cost for ``task``, checked
    against its budget before training (DP-SGD's cost is checked after it).

    Raises:
        PrivacyBudgetError: as :func:`charge_budget`.
    """
    event = mechanism(task.config).event
    planned = [] if event is None else [event]
    if planned or task.config.extension(DpSgd) is None:
        charge_budget(task, state, origin=origin, events=planned)
    return planned


def charge_budget(
    task: FitTask,
    state: dict[str, RecordValue],
    *,
    origin: TaskOrigin,
    events: Sequence[GaussianEvent],
) -> Ledger | None:
    """The device's ledger with ``events`` charged for this release of ``task``; None
    when the device has no budget.

    Raises:
        PrivacyBudgetError: no events (the release would not be private: epsilon =
            infinity), the events would exceed the device's budget, or its ledger cannot
            be read (the device then refuses private tasks: fail closed).
    """
    budget = task.config.privacy_budget
    if budget is None:
        return None
    if not events:
        raise PrivacyBudgetError(
            f"task {origin.ledger_id!r} would release the update without clipping and noise "
            f"this device applies itself (the server's ClipAndNoise, or the device's "
            "own clipping_norm and min_noise_multiplier; or DP-SGD): epsilon = inf, refused",
            round=task.round,
            stage="privacy",
        )
    ledger = load_ledger(state)
    for event in events:
        ledger = ledger.charge(
            task_id=origin.ledger_id, round=task.round, event=event, budget=budget
        )
    return ledger


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
    """``update`` clipped and noised as :func:`mechanism` says for ``config`` (in
    float64, returned in each tensor's dtype); as is when not clipped."""
    applied = mechanism(config)
    if applied.clipping_norm is None:
        return update
    layout = update.layout()
    flat, _ = clip_l2(layout.flatten(update), applied.clipping_norm)
    if applied.noise_std > 0:
        source = context.noise("dp-noise") if applied.seeded else SecureNoise()
        flat = flat + gaussian_noise(flat.size, applied.noise_std, source)
    return layout.unflatten(np.asarray(flat, dtype=np.float64))
