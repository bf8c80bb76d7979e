"""Differential privacy: clipping, noise, adaptive clipping, accounting, budgets.

The client-side half of DP-FedAvg and its bookkeeping: :func:`clip_l2` bounds an update's
sensitivity, :func:`gaussian_noise` adds the Gaussian mechanism's noise from a seeded
(simulation) or cryptographic (deployment) :class:`NoiseSource`, :class:`AdaptiveClipping`
moves the clipping norm toward a quantile of the update norms, :class:`GaussianEvent` and
:func:`epsilon` account for what was released, and :class:`Ledger` / :class:`FileLedger`
keep a device's spent budget across restarts and refuse what would exceed it.

Computing an epsilon needs the ``dp`` extra (``pip install 'fedhive[dp]'``, which brings
``dp-accounting``); it is imported only then, never by importing this package.
"""

from __future__ import annotations

from fedhive.privacy.accountant import AccountantKind, GaussianEvent, epsilon, would_exceed
from fedhive.privacy.adaptive import AdaptiveClipping, update_noise_multiplier
from fedhive.privacy.clipping import clip_l2
from fedhive.privacy.ledger import FileLedger, Ledger, LedgerEntry
from fedhive.privacy.noise import NoiseSource, SecureNoise, SeededNoise, gaussian_noise

__all__ = [
    "AccountantKind",
    "AdaptiveClipping",
    "FileLedger",
    "GaussianEvent",
    "Ledger",
    "LedgerEntry",
    "NoiseSource",
    "SecureNoise",
    "SeededNoise",
    "clip_l2",
    "epsilon",
    "gaussian_noise",
    "update_noise_multiplier",
    "would_exceed",
]
