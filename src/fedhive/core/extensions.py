"""Typed instructions the server gives a client beside its training settings.

A :class:`~fedhive.core.messages.ClientConfig` carries at most one value of each type
(``config.extensions``) and a client reads them by type,
``config.extension(Proximal)``, never by a string key. Each value checks itself when
built (a ``ConfigError`` names the field), so a client, a decoder or a config parser
holding one holds a valid instruction.

- :class:`Proximal`: FedProx's proximal term ``(mu/2) * ||w - w^t||^2``.
- :class:`PartialWork`: a cap on the optimizer steps of one fit (FedProx's stragglers).
- :class:`ClipAndNoise`: DP-FedAvg's ask: the round's noise multiplier, and in
  distributed mode the clipping norm and noise std the device applies itself.
- :class:`SecAggWeighting`: how the client weighs its update inside the masked sum.
- :class:`DpSgd`: sample-level DP-SGD (per-sample clipping and noise on every step).
- :class:`Compression`: encode the update with a codec pipeline before it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhive.core._compat import StrEnum
from fedhive.core.codecs import Pipeline
from fedhive.core.config import check_int, check_real
from fedhive.errors import ConfigError

__all__ = [
    "TABLES",
    "ClipAndNoise",
    "Compression",
    "DpSgd",
    "Extension",
    "PartialWork",
    "Proximal",
    "SecAggWeighting",
    "Weighting",
]


@dataclass(frozen=True)
class Extension:
    """The base of every typed client instruction (a ClientConfig holds one per type)."""


@dataclass(frozen=True, kw_only=True)
class Proximal(Extension):
    """Train on ``loss + (mu/2) * ||w - w^t||^2`` from the global weights ``w^t``
    (FedProx, Li et al., MLSys 2020, eq. 2); ``mu`` a finite number >= 0."""

    mu: float

    def __post_init__(self) -> None:
        check_real("mu", self.mu, low=0)


@dataclass(frozen=True, kw_only=True)
class PartialWork(Extension):
    """Stop a fit after ``max_local_steps`` (>= 1) optimizer steps."""

    max_local_steps: int

    def __post_init__(self) -> None:
        check_int("max_local_steps", self.max_local_steps, minimum=1)


@dataclass(frozen=True, kw_only=True)
class ClipAndNoise(Extension):
    """DP-FedAvg's ask of a device (see :mod:`fedhive.client.privacy`).

    Attributes:
        noise_multiplier: the round's noise multiplier z, as the server claims it (a
            device with a budget charges what it applies, never this).
        clipping_norm: clip the update to this L2 norm before it leaves (distributed
            mode); None: the device does not clip (central mode: the server does).
        noise_std: add Gaussian noise of this std after clipping (distributed mode; 0:
            none); needs a clipping norm.
        seeded: the noise may come from the task's seed (reproducible simulation)
            rather than a CSPRNG; a deployed device ignores it.
    """

    noise_multiplier: float
    clipping_norm: float | None = None
    noise_std: float = 0.0
    seeded: bool = True

    def __post_init__(self) -> None:
        check_real("noise_multiplier", self.noise_multiplier, low=0, low_open=True)
        if self.clipping_norm is not None:
            check_real("clipping_norm", self.clipping_norm, low=0, low_open=True)
        check_real("noise_std", self.noise_std, low=0)
        if self.noise_std > 0 and self.clipping_norm is None:
            raise ConfigError("noise_std: noise without a clipping norm bounds nothing")
        if not isinstance(self.seeded, bool):
            raise ConfigError(f"seeded: must be true or false, got {self.seeded!r}")


class Weighting(StrEnum):
    """How each client's update is weighted inside the masked sum."""

    EXAMPLES = "examples"  # by its example count (FedAvg)
    UNIFORM = "uniform"  # equally (DP-FedAvg)


@dataclass(frozen=True, kw_only=True)
class SecAggWeighting(Extension):
    """Mask the update with this weighting (absent: :attr:`Weighting.EXAMPLES`)."""

    weighting: Weighting

    def __post_init__(self) -> None:
        if not isinstance(self.weighting, Weighting):
            raise ConfigError(f"weighting: must be a Weighting, got {self.weighting!r}")


@dataclass(frozen=True, kw_only=True)
class DpSgd(Extension):
    """Train with DP-SGD (Abadi et al., CCS 2016; see :mod:`fedhive.client.dpsgd`).

    Attributes:
        noise_multiplier: per-step noise std over ``max_grad_norm`` (> 0).
        max_grad_norm: per-sample gradient clipping norm (> 0).
        delta: the delta the fit's ``dpsgd_epsilon`` metric is reported at.
    """

    noise_multiplier: float
    max_grad_norm: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        check_real("noise_multiplier", self.noise_multiplier, low=0, low_open=True)
        check_real("max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        check_real("delta", self.delta, low=0, high=1, low_open=True, high_open=True)


@dataclass(frozen=True, kw_only=True)
class Compression(Extension):
    """Send the update encoded with ``pipeline`` (:mod:`fedhive.compression`).

    The client compresses after clipping and noise (post-processing: it costs no
    privacy) and before SecAgg's masking; the server decodes the payload with the
    published model's layout before it verifies the update. A biased sparsifier keeps
    its error-feedback residual in the client's persistent state.
    """

    pipeline: Pipeline

    def __post_init__(self) -> None:
        if not isinstance(self.pipeline, Pipeline):
            raise ConfigError(
                f"pipeline: must be a fedhive.compression.Pipeline, got {self.pipeline!r}"
            )


TABLES: dict[str, type[Extension]] = {
    "clip_and_noise": ClipAndNoise,
    "compression": Compression,
    "dpsgd": DpSgd,
    "partial_work": PartialWork,
    "proximal": Proximal,
    "secagg_weighting": SecAggWeighting,
}
"""Each instruction's name in a config table and on
the wire (``fedhive.proto``'s ``Extensions``)."""
