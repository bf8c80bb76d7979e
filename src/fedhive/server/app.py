"""The server's half of an app: the initial model and its central evaluation.

A deployed server is given only this half (``[server] app``), so it never builds the
clients' data; a simulation composes it with the clients' half
(:class:`~fedhive.client.app.ClientApp`) into a ``SimulationApp``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhive.core.weights import Weights
from fedhive.server.run import EvaluateFn


@dataclass(frozen=True, kw_only=True)
class ServerApp:
    """The model the run starts from and, optionally, a central evaluation of it."""

    initial_weights: Weights
    evaluate_fn: EvaluateFn | None = None
