"""Simulated stragglers: in each round some selected clients do only part of their work.

As in FedProx's experiments (Li et al., MLSys 2020, Sec. 5.2): a straggler runs a number
of local epochs drawn uniformly from [1, E] instead of E. FedAvg, as the paper runs it,
drops stragglers (``drop = true``: their task fails); FedProx keeps their partial work.
Whether a client straggles in a round comes from its own seed stream for that round,
so a run is reproducible and a client straggles in some rounds and not in others.
"""

from __future__ import annotations

import dataclasses

from fedhive.client.app import ClientApp
from fedhive.client.base import Client, Context
from fedhive.config.simulated import StragglerSection
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.weights import Weights
from fedhive.errors import ClientError
from fedhive.simulation.app import SimulationApp


class StragglingClient:
    """Wraps a client: in a straggling round it trains fewer epochs (or is dropped)."""

    def __init__(self, honest: Client, section: StragglerSection) -> None:
        self._honest = honest
        self._section = section

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Train fully, partly (a straggling round), or fail (a dropped straggler)."""
        rng = context.seed.child("straggler").numpy()
        if rng.random() >= self._section.fraction:
            return self._honest.fit(weights, config, context)
        if self._section.drop:
            raise ClientError("straggler: dropped before finishing its local work")
        epochs = int(rng.integers(1, config.local_epochs + 1))
        return self._honest.fit(weights, dataclasses.replace(config, local_epochs=epochs), context)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Evaluation is never slowed down."""
        return self._honest.evaluate(weights, config, context)


def with_stragglers(app: SimulationApp, section: StragglerSection) -> SimulationApp:
    """``app`` whose clients straggle as ``section`` says (unchanged when fraction is 0)."""
    if section.fraction == 0:
        return app
    honest_fn = app.client.client_fn
    client = ClientApp(client_fn=lambda client_id: StragglingClient(honest_fn(client_id), section))
    return dataclasses.replace(app, client=client)
