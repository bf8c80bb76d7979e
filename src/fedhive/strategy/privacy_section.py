"""The ``[privacy]`` config section: a DP transform added to the configured algorithm."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated

import msgspec

from fedhive.core.decode import FiniteNonNegative, FinitePositive
from fedhive.errors import ConfigError
from fedhive.privacy import AccountantKind, AdaptiveClipping
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.fedbuff import Buffered
from fedhive.strategy.private import DifferentialPrivacy, DpMode


class PrivacySection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[privacy]`` config section: DP as the configured algorithm's last transform.

    ```toml
    [privacy]
    mode = "central"            # central | distributed (clients add the noise)
    noise_multiplier = 1.0
    clipping_norm = 1.0         # the fixed norm, or the initial one when adaptive
    adaptive = false            # adaptive quantile clipping (Andrew et al. 2021)
    target_quantile = 0.5
    clipping_learning_rate = 0.2
    count_noise_multiplier = 0.0
    target_epsilon = 8.0        # stop before a round would exceed it (default: never)
    target_delta = 1e-5
    accountant = "rdp"          # rdp | pld
    secure_noise = false        # simulation: true draws noise from a CSPRNG, not the seed
    ```
    """

    mode: DpMode = DpMode.CENTRAL
    noise_multiplier: FinitePositive = 1.0
    clipping_norm: FinitePositive = 1.0
    adaptive: bool = False
    target_quantile: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    clipping_learning_rate: FinitePositive = 0.2
    count_noise_multiplier: FiniteNonNegative = 0.0
    target_epsilon: Annotated[float, msgspec.Meta(gt=0)] = math.inf
    target_delta: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1e-5
    accountant: AccountantKind = AccountantKind.RDP
    secure_noise: bool = False

    def wrap(self, strategy: object, *, seed: int | None) -> Algorithm:
        """``strategy`` (an algorithm with synchronous rounds) with a
        :class:`DifferentialPrivacy` transform after its own; noise seeded by ``seed``
        unless ``secure_noise`` or ``seed`` is None (then from a CSPRNG).

        Raises:
            ConfigError: the strategy is not such an algorithm, its parts do not compose
                with DP, or a value is out of range.
        """
        if not isinstance(strategy, Algorithm) or isinstance(strategy.schedule, Buffered):
            raise ConfigError(
                "privacy: DP needs an algorithm with synchronous rounds (fedavg, fedprox, "
                f"scaffold, fedadam, fedyogi, fedadagrad), not {_named(strategy)}"
            )
        adaptive = None
        if self.adaptive:
            adaptive = AdaptiveClipping(
                initial_clipping_norm=self.clipping_norm,
                target_quantile=self.target_quantile,
                learning_rate=self.clipping_learning_rate,
                count_noise_multiplier=self.count_noise_multiplier,
            )
        dp = DifferentialPrivacy(
            noise_multiplier=self.noise_multiplier,
            clipping_norm=self.clipping_norm,
            adaptive=adaptive,
            mode=self.mode,
            target_delta=self.target_delta,
            target_epsilon=self.target_epsilon,
            accountant=self.accountant,
            noise_seed=None if self.secure_noise else seed,
        )
        return replace(strategy, transforms=(*strategy.transforms, dp))


def _named(strategy: object) -> str:
    if isinstance(strategy, Algorithm):
        return "fedbuff (asynchronous)"
    return type(strategy).__name__
