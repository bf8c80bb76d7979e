"""The ``[privacy]`` config section: DP-FedAvg around the configured strategy."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedhive.core.config import check_real
from fedhive.errors import ConfigError
from fedhive.privacy import AccountantKind, AdaptiveClipping
from fedhive.strategy.fedavg import FedAvg
from fedhive.strategy.private import DpFedAvg, DpMode


@dataclass(frozen=True, kw_only=True)
class PrivacySection:
    """The ``[privacy]`` config section: DP-FedAvg around the configured strategy.

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
    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    adaptive: bool = False
    target_quantile: float = 0.5
    clipping_learning_rate: float = 0.2
    count_noise_multiplier: float = 0.0
    target_epsilon: float = math.inf
    target_delta: float = 1e-5
    accountant: AccountantKind = AccountantKind.RDP
    secure_noise: bool = False

    def __post_init__(self) -> None:
        check_real("noise_multiplier", self.noise_multiplier, low=0, low_open=True)
        check_real("clipping_norm", self.clipping_norm, low=0, low_open=True)
        check_real("target_quantile", self.target_quantile, low=0, high=1, low_open=True)
        check_real("clipping_learning_rate", self.clipping_learning_rate, low=0, low_open=True)
        check_real("count_noise_multiplier", self.count_noise_multiplier, low=0)
        check_real("target_delta", self.target_delta, low=0, high=1, low_open=True)
        if not self.target_epsilon > 0:
            raise ConfigError(f"target_epsilon: must be > 0, got {self.target_epsilon}")

    def wrap(self, strategy: object, *, seed: int | None) -> DpFedAvg:
        """``strategy`` (a FedAvg) with DP; noise seeded by ``seed`` unless
        ``secure_noise`` or ``seed`` is None (then from a CSPRNG).

        Raises:
            ConfigError: the strategy is not a FedAvg, or a value is out of range.
        """
        if not isinstance(strategy, FedAvg):
            raise ConfigError(
                "privacy: DP-FedAvg wraps fedavg, fedprox, fedadam, fedyogi or fedadagrad, "
                f"not {type(strategy).__name__}"
            )
        adaptive = None
        if self.adaptive:
            adaptive = AdaptiveClipping(
                initial_clipping_norm=self.clipping_norm,
                target_quantile=self.target_quantile,
                learning_rate=self.clipping_learning_rate,
                count_noise_multiplier=self.count_noise_multiplier,
            )
        return DpFedAvg(
            base=strategy,
            noise_multiplier=self.noise_multiplier,
            clipping_norm=self.clipping_norm,
            adaptive=adaptive,
            mode=self.mode,
            target_delta=self.target_delta,
            target_epsilon=self.target_epsilon,
            accountant=self.accountant,
            noise_seed=None if self.secure_noise else seed,
        )
