"""Adaptive quantile clipping: the clipping norm tracks a quantile of the update norms.

Andrew, Thakkar, McMahan and Ramaswamy, "Differentially Private Learning with Adaptive
Clipping", NeurIPS 2021, Algorithm 1 with the geometric update. Each round, every client
reports one bit ``b_i = 1[‖Δ_i‖ <= C]``; the server forms the noised fraction

    b̃ = (Σ b_i + N(0, sigma_b²)) / m

and moves the norm toward the target quantile gamma:

    C ← C · exp(-η (b̃ - gamma)).

The bits cost privacy too. The released value is the noised centred sum
``Σ (b_i - ½) + N(0, sigma_b²)`` (sensitivity ½), from which b̃ follows given the public m, so
with count noise sigma_b the update's noise multiplier must grow from z to
``z_Δ = (z⁻² - (2 sigma_b)⁻²)^(-1/2)`` for the pair to spend what z alone would (the paper,
section 3.1): :func:`update_noise_multiplier`. ``m`` must therefore be public: the fixed
(expected) number of clients per round, the same denominator the averaged update uses.

The clipping norm is state the caller keeps and passes in (DESIGN.md, Conventions):
``next_clipping_norm`` is a pure function of it and of the round's counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedhive.core.config import check_int, check_real
from fedhive.errors import ConfigError
from fedhive.privacy.noise import NoiseSource

__all__ = ["AdaptiveClipping", "update_noise_multiplier"]


@dataclass(frozen=True, kw_only=True)
class AdaptiveClipping:
    """Settings of adaptive quantile clipping (Andrew et al. 2021, Algorithm 1).

    Attributes:
        initial_clipping_norm: C at the first round.
        target_quantile: gamma, the fraction of updates that should be left unclipped.
        learning_rate: η of the geometric update.
        count_noise_multiplier: sigma_b, the std of the Gaussian noise added to the count of
            unclipped updates (in counts, not a fraction); 0 means no noise (no privacy for
            the count: use only when the count is not released or in simulation).
    """

    initial_clipping_norm: float = 0.1
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_noise_multiplier: float = 0.0

    def __post_init__(self) -> None:
        check_real("initial_clipping_norm", self.initial_clipping_norm, low=0, low_open=True)
        check_real("target_quantile", self.target_quantile, low=0, high=1, low_open=True,
                   high_open=True)  # fmt: skip
        check_real("learning_rate", self.learning_rate, low=0, low_open=True)
        check_real("count_noise_multiplier", self.count_noise_multiplier, low=0)

    def next_clipping_norm(
        self, clipping_norm: float, unclipped: int, count: int, noise: NoiseSource | None
    ) -> float:
        """The clipping norm for the next round, ``C · exp(-η (b̃ - gamma))``.

        Args:
            clipping_norm: C used this round.
            unclipped: how many of this round's updates had norm <= C (Σ b_i).
            count: m, the public number of updates per round, at least 1 (with Poisson
                sampling, the expected number: ``unclipped`` may then exceed it).
            noise: where the count noise comes from; needed when sigma_b > 0, ignored else.

        Raises:
            ConfigError: a negative or zero count, a non-positive norm, or sigma_b > 0 with
                no noise source.
        """
        check_real("clipping_norm", clipping_norm, low=0, low_open=True)
        check_int("count", count, minimum=1)
        check_int("unclipped", unclipped, minimum=0)
        noised = float(unclipped)
        if self.count_noise_multiplier > 0:
            if noise is None:
                raise ConfigError("count_noise_multiplier > 0 needs a noise source, got None")
            noised += self.count_noise_multiplier * float(noise.normal(1)[0])
        fraction = noised / count
        step = -self.learning_rate * (fraction - self.target_quantile)
        return float(clipping_norm * math.exp(step))


def update_noise_multiplier(noise_multiplier: float, count_noise_multiplier: float) -> float:
    """The update's noise multiplier z_Δ that keeps the total at ``noise_multiplier``.

    ``z_Δ = (z⁻² - (2 sigma_b)⁻²)^(-1/2)`` (Andrew et al. 2021, section 3.1): noising the updates
    with z_Δ and the centred count (sensitivity ½) with sigma_b spends what noise multiplier z
    alone would, as the two Gaussian mechanisms compose into one with multiplier z.

    Raises:
        ConfigError: a non-positive ``noise_multiplier``, a negative sigma_b, or sigma_b too small
            for the budget (``(2 sigma_b)⁻² >= z⁻²``: the count alone would spend all of it).
    """
    check_real("noise_multiplier", noise_multiplier, low=0, low_open=True)
    check_real("count_noise_multiplier", count_noise_multiplier, low=0)
    if count_noise_multiplier == 0:
        return float(noise_multiplier)
    remaining = noise_multiplier**-2 - (2.0 * count_noise_multiplier) ** -2
    if remaining <= 0:
        raise ConfigError(
            f"count_noise_multiplier: {count_noise_multiplier:g} is too small for "
            f"noise_multiplier {noise_multiplier:g}; it must exceed "
            f"{noise_multiplier / 2:g} (half the noise multiplier)"
        )
    return float(remaining**-0.5)
