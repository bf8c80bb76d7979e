"""The Client protocol every client implements, and the context a client runs in."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult, FitTask
from fedhive.core.rng import SeedStream
from fedhive.core.serde import RecordValue
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError
from fedhive.privacy import GaussianEvent, NoiseSource, SecureNoise, SeededNoise

SIMULATION_RUN = "simulation"
"""The run id of every simulated task (the ledger of a simulated device lives one run)."""


@dataclass(frozen=True, kw_only=True)
class TaskOrigin:
    """Which run and task a fit answers, and whether it is simulated.

    A device's ledger charges each release under ``run_id/task_id``. Deployment: both
    come from the task envelope (a fresh task id per task the server issues), and noise
    always comes from the OS's CSPRNG. Simulation (:meth:`simulation`): derived from the
    task, so a run is reproducible from its seed.
    """

    run_id: str
    task_id: str
    simulated: bool = False

    def __post_init__(self) -> None:
        for name in ("run_id", "task_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name}: must be a non-empty string, got {value!r}")

    @classmethod
    def simulation(cls, task: FitTask) -> TaskOrigin:
        """A simulated task's origin: its id names the round, the client and the task's
        seed (itself derived from the run seed, so distinct per task and reproducible)."""
        task_id = f"round-{task.round}/{task.client_id}/{task.seed:016x}"
        return cls(run_id=SIMULATION_RUN, task_id=task_id, simulated=True)

    @property
    def ledger_id(self) -> str:
        """The id this task's release is charged under in the device's ledger."""
        return f"{self.run_id}/{self.task_id}"


@dataclass
class Context:
    """Where a client call runs: who, which round, its random stream, its own state.

    ``state`` persists between the rounds the same client joins (it survives process
    boundaries, so values must be numpy arrays, bool, int, float or str).
    ``seed`` is this client's stream for this round: use ``numpy_rng()`` or
    ``seed.torch_seed``, never a global random generator.
    ``aux`` holds the auxiliary tensors the strategy sent with the model (names starting
    with ``@``, e.g. SCAFFOLD's server control variate); empty for most strategies.
    ``simulated`` is True only in simulation: DP noise may then come from ``seed``
    (reproducible). Otherwise (deployment, the default) DP noise comes from the OS,
    because the server knows ``seed``: draw it with :meth:`noise` or :meth:`noise_seed`.
    ``released`` collects the privacy events of mechanisms the client applied itself
    (DP-SGD's steps); the pipeline charges them to the device's ledger on release.
    """

    client_id: str
    round: int
    seed: SeedStream
    state: dict[str, RecordValue] = field(default_factory=dict)
    aux: Weights = field(default_factory=Weights)
    simulated: bool = False
    released: list[GaussianEvent] = field(default_factory=list)

    def numpy_rng(self) -> np.random.Generator:
        """A numpy Generator for this client and round."""
        return self.seed.numpy()

    def noise(self, name: str) -> NoiseSource:
        """DP noise: seeded from this call's stream ``name`` in simulation, else a CSPRNG."""
        return SeededNoise(self.seed.child(name)) if self.simulated else SecureNoise()

    def noise_seed(self, name: str) -> int:
        """A seed for a library's DP noise generator (e.g. Opacus's): this call's stream
        ``name`` in simulation, else 63 bits of ``os.urandom`` (never a seed the server
        knows)."""
        if self.simulated:
            return self.seed.child(name).torch_seed
        return int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1)


@runtime_checkable
class Client(Protocol):
    """A participant holding private data: trains and evaluates the model it is given."""

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Train from ``weights`` on local data; return new weights or a delta."""
        ...

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Evaluate ``weights`` on local test data."""
        ...


ClientFn = Callable[[str], Client]
"""Builds the client with the given id (called only for clients that are selected)."""
