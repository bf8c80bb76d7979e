"""The Client protocol every client implements, and the context a client runs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.rng import SeedStream
from fedhive.core.serde import RecordValue
from fedhive.core.weights import Weights


@dataclass
class Context:
    """Where a client call runs: who, which round, its random stream, its own state.

    ``state`` persists between the rounds the same client joins (it survives process
    boundaries, so values must be numpy arrays, bool, int, float or str).
    ``seed`` is this client's stream for this round: use ``numpy_rng()`` or
    ``seed.torch_seed``, never a global random generator.
    ``aux`` holds the auxiliary tensors the strategy sent with the model (names starting
    with ``@``, e.g. SCAFFOLD's server control variate); empty for most strategies.
    """

    client_id: str
    round: int
    seed: SeedStream
    state: dict[str, RecordValue] = field(default_factory=dict)
    aux: Weights = field(default_factory=Weights)

    def numpy_rng(self) -> np.random.Generator:
        """A numpy Generator for this client and round."""
        return self.seed.numpy()


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
