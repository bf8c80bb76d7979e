"""The sections only ``fedhive simulate`` reads: backend, attacks, stragglers, devices.

They are declared here, beside the rest of the run config, so that the config (read by
``fedhive server`` too) never imports simulation code; :mod:`fedhive.simulation` imports
them from here and runs what they describe.
"""

from __future__ import annotations

import msgspec

from fedhive.core._compat import StrEnum
from fedhive.core.decode import (
    AtLeastOne,
    AtLeastZero,
    Finite,
    FiniteNonNegative,
    FinitePositive,
    Fraction,
)
from fedhive.errors import ConfigError


class Backend(StrEnum):
    """Where simulated clients run."""

    LOCAL = "local"
    PROCESS = "process"
    VECTORIZED = "vectorized"  # torch.func: a cohort trained at once (fallback: local)
    RAY = "ray"  # Ray actors, on this machine or a cluster (the fedhive[ray] extra)


class StartMethod(StrEnum):
    """How the process backend's worker processes start."""

    FORK = "fork"  # inherit the driver's built app (fast; POSIX only)
    SPAWN = "spawn"  # a fresh interpreter that builds the app from its spec


class StateBackend(StrEnum):
    """Where virtual clients' persistent states are kept between their rounds."""

    MEMORY = "memory"  # a dict in the driver (grows with the clients that hold one)
    SQLITE = "sqlite"  # one SQLite file (memory independent of the number of clients)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A config section: frozen, every key declared (an unknown key is refused)."""


class SimulationSection(_Section, frozen=True):
    """The ``[simulation]`` section: the backend that runs the clients, and where their
    persistent states live (``state_path``: the SQLite file, relative to the config,
    kept across runs; empty: ``states.db`` in the run's output folder, fresh each run).

    ``ray_address`` (ray backend only): the cluster to join (``"auto"`` or
    ``"host:port"``); none starts a local Ray with ``workers`` CPUs for the run.
    """

    backend: Backend = Backend.LOCAL
    workers: AtLeastOne = 2
    start_method: StartMethod = StartMethod.FORK
    state: StateBackend = StateBackend.MEMORY
    state_path: str = ""
    ray_address: str | None = None

    def __post_init__(self) -> None:
        """``ray_address`` means nothing to another backend: refuse it rather than ignore it."""
        if self.ray_address is not None and self.backend != Backend.RAY:
            raise ConfigError(
                f'simulation.ray_address: only with backend = "ray", not {str(self.backend)!r}'
            )
        if self.ray_address is not None and not self.ray_address.strip():
            raise ConfigError("simulation.ray_address: must not be empty (omit it for a local Ray)")


class AttackKind(StrEnum):
    """What a malicious client does."""

    NONE = "none"
    SIGN_FLIP = "sign_flip"  # send -delta
    SCALING = "scaling"  # send scale * delta (model replacement)
    GAUSSIAN = "gaussian"  # send N(0, noise_std^2) noise
    LABEL_FLIP = "label_flip"  # train with source_label relabelled target_label
    BACKDOOR = "backdoor"  # train with a trigger stamped on samples relabelled target_label


class AttackSection(_Section, frozen=True):
    """The ``[attack]`` section: malicious clients (see :mod:`fedhive.simulation.attacks`).

    ``fraction`` of the clients (chosen by the run seed) run attack ``kind``: ``scale``
    for ``scaling``, ``noise_std`` for ``gaussian``, ``source_label`` → ``target_label``
    for ``label_flip``; ``backdoor`` sets the last ``trigger_size`` input features to
    ``trigger_value`` on ``poison_fraction`` of a client's samples, labelled
    ``target_label``.
    """

    kind: AttackKind = AttackKind.NONE
    fraction: Fraction = 0.0
    scale: Finite = 10.0
    noise_std: FiniteNonNegative = 1.0
    target_label: AtLeastZero = 0
    source_label: AtLeastZero = 1
    trigger_value: Finite = 1.0
    trigger_size: AtLeastOne = 4
    poison_fraction: Fraction = 0.5

    def __post_init__(self) -> None:
        """A label flip needs two labels (a relation between keys, not one key's range)."""
        if self.kind == AttackKind.LABEL_FLIP and self.source_label == self.target_label:
            raise ConfigError(
                f"source_label: must differ from target_label, both are {self.source_label}"
            )


class StragglerSection(_Section, frozen=True):
    """The ``[stragglers]`` section: ``fraction`` of the selected clients straggle each
    round (see :mod:`fedhive.simulation.stragglers`); ``drop``: discard them."""

    fraction: Fraction = 0.0
    drop: bool = False


class DeviceDistribution(StrEnum):
    """How device speeds are spread (see :mod:`fedhive.simulation.devices`)."""

    CONSTANT = "constant"
    LOGNORMAL = "lognormal"
    PARETO = "pareto"


class DevicesSection(_Section, frozen=True):
    """The ``[devices]`` section: the speed distribution and the time of an epoch."""

    distribution: DeviceDistribution = DeviceDistribution.CONSTANT
    sigma: FiniteNonNegative = 1.0
    alpha: FinitePositive = 1.5
    seconds_per_epoch: FinitePositive = 1.0
    jitter: FiniteNonNegative = 0.0


__all__ = [
    "AttackKind",
    "AttackSection",
    "Backend",
    "DeviceDistribution",
    "DevicesSection",
    "SimulationSection",
    "StartMethod",
    "StateBackend",
    "StragglerSection",
]
