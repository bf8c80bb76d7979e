"""digits-sklearn: scikit-learn's SGDClassifier (logistic loss) federated on digits.

Every client knows the ten classes up front, so a client whose shard lacks a digit still
produces coefficients of the federation's shape.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import SGDClassifier

from fedhive import AppContext, ClientApp, ServerApp, SimulationApp, Weights
from fedhive.client.sklearn import SklearnClient, initial_weights
from fedhive.core import run_stream
from fedhive.simulation.datasets import load_digits
from fedhive.simulation.partition import dirichlet


def build(ctx: AppContext) -> SimulationApp:
    """Partition digits over the clients and wire SGDClassifier clients."""
    params = ctx.params
    stream = run_stream(ctx.seed).child("app")
    data = load_digits(test_fraction=0.2, rng=stream.child("split").numpy())
    partition = dirichlet(
        data.y_train,
        int(params.get("num_clients", 20)),
        float(params.get("alpha", 0.5)),
        stream.child("partition").numpy(),
        min_size=2,
    )
    classes = np.arange(10)
    estimator = SGDClassifier(loss="log_loss", alpha=float(params.get("l2", 1e-4)))
    shards = {f"client-{i:03d}": idx for i, idx in enumerate(partition.indices)}

    def client_fn(client_id: str) -> SklearnClient:
        idx = shards[client_id]
        return SklearnClient(
            estimator=estimator,
            x_train=data.x_train[idx],
            y_train=data.y_train[idx],
            classes=classes,
        )

    evaluator = SklearnClient(
        estimator=estimator,
        x_train=data.x_train[:0],
        y_train=data.y_train[:0],
        x_test=data.x_test,
        y_test=data.y_test,
        classes=classes,
    )

    def central(weights: Weights) -> dict[str, float]:
        return evaluator.score(weights)

    return SimulationApp(
        server=ServerApp(
            initial_weights=initial_weights(n_features=64, classes=classes), evaluate_fn=central
        ),
        client=ClientApp(client_fn=client_fn),
        client_ids=sorted(shards),
    )
