"""The ``[secagg]`` section: SecAgg+ settings, and the dropout a simulation plays.

```toml
[secagg]
dropout_fraction = 0.1                   # the protocol's settings (SecureAggregation)
clip_range = 1.0
weighting = "examples"                   # default "uniform" with a [privacy] section
simulated_dropout = 0.3                  # simulation: devices that vanish each round
simulated_dropout_stage = "masked_input" # ... at this stage
```

The section is a msgspec Struct (constraints checked when a config is decoded); it builds
the server's :class:`~fedhive.server.secure.SecureAggregation` and the simulation's
:class:`SimulatedDropout`, library objects that also check themselves when built from
Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec

from fedhive.core.config import check_real
from fedhive.core.decode import AtLeastOne, FinitePositive
from fedhive.core.extensions import Weighting
from fedhive.core.rng import run_stream
from fedhive.errors import ConfigError
from fedhive.secagg import Stage
from fedhive.server.secure import SecureAggregation

_Share = Annotated[float, msgspec.Meta(ge=0, lt=1)]


@dataclass(frozen=True, kw_only=True)
class SimulatedDropout:
    """A seeded ``fraction`` of each round's devices vanish at ``stage`` (simulation)."""

    fraction: float = 0.0
    stage: Stage = Stage.MASKED_INPUT

    def __post_init__(self) -> None:
        check_real("simulated_dropout", self.fraction, low=0, high=1, high_open=True)

    def dropped(self, seed: int, round: int, cohort: Sequence[str]) -> frozenset[str]:
        """The devices of ``cohort`` that vanish this round."""
        count = int(self.fraction * len(cohort))
        if count == 0:
            return frozenset()
        rng = run_stream(seed).child("secagg-dropout").child(round).numpy()
        return frozenset(rng.choice(sorted(cohort), size=count, replace=False).tolist())


class SecAggSection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[secagg]`` keys: :class:`SecureAggregation`'s, and the simulated dropout.

    ``weighting`` None: ``"uniform"`` with a ``[privacy]`` section (what distributed DP
    needs; :func:`fedhive.server.rules.check_run` checks it), else ``"examples"``.
    """

    dropout_fraction: _Share = SecureAggregation.dropout_fraction
    corruption_fraction: _Share = SecureAggregation.corruption_fraction
    security_bits: AtLeastOne = SecureAggregation.security_bits
    correctness_bits: AtLeastOne = SecureAggregation.correctness_bits
    ring_bits: int = SecureAggregation.ring_bits
    clip_range: FinitePositive = SecureAggregation.clip_range
    max_weight: AtLeastOne = SecureAggregation.max_weight
    weighting: Weighting | None = None
    simulated_dropout: _Share = 0.0
    simulated_dropout_stage: Stage = Stage.MASKED_INPUT

    def build(self, *, private: bool) -> tuple[SecureAggregation, SimulatedDropout]:
        """The protocol settings (``private``: a ``[privacy]`` section is set) and the
        simulated dropout; ``secagg.``-prefixed errors of settings no cohort could meet."""
        default = Weighting.UNIFORM if private else Weighting.EXAMPLES
        try:
            secure = SecureAggregation(
                dropout_fraction=self.dropout_fraction,
                corruption_fraction=self.corruption_fraction,
                security_bits=self.security_bits,
                correctness_bits=self.correctness_bits,
                ring_bits=self.ring_bits,
                clip_range=self.clip_range,
                max_weight=self.max_weight,
                weighting=self.weighting or default,
            )
        except ConfigError as exc:
            raise ConfigError(f"secagg.{exc.message}") from None
        dropout = SimulatedDropout(
            fraction=self.simulated_dropout, stage=self.simulated_dropout_stage
        )
        return secure, dropout


def secagg_table(secure: SecureAggregation, dropout: SimulatedDropout) -> SecAggSection:
    """The section that builds ``secure`` and ``dropout`` back (config.json)."""
    return SecAggSection(
        dropout_fraction=secure.dropout_fraction,
        corruption_fraction=secure.corruption_fraction,
        security_bits=secure.security_bits,
        correctness_bits=secure.correctness_bits,
        ring_bits=secure.ring_bits,
        clip_range=secure.clip_range,
        max_weight=secure.max_weight,
        weighting=secure.weighting,
        simulated_dropout=dropout.fraction,
        simulated_dropout_stage=dropout.stage,
    )
