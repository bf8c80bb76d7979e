"""One NumPy logistic regression written twice: as a Flower NumPyClient and as a native
fedhive client, with the same data, seeds and arithmetic (the Flower interop tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedhive import AppContext, ClientApp, ClientConfig, Context, ServerApp, SimulationApp, Weights
from fedhive.client.flower import FlowerClient, initial_weights
from fedhive.client.numpy import NumpyClient

Array = npt.NDArray[Any]
Data = tuple[Array, Array]
FEATURES, CLASSES = 5, 3
CLIENT_IDS = [f"c{i}" for i in range(4)]


def client_data(client_id: str) -> tuple[Data, Data]:
    """A client's (train, test) share: Gaussian blobs, a different draw per client."""
    rng = np.random.default_rng(int(client_id[1:]) + 100)
    y = rng.integers(0, CLASSES, size=50)
    centers = 2.0 * np.eye(CLASSES, FEATURES, dtype=np.float32)
    x = (centers[y] + rng.normal(size=(50, FEATURES))).astype(np.float32)
    return (x[:40], y[:40]), (x[40:], y[40:])


def _probs(w: Array, b: Array, x: Array) -> Array:
    logits = x @ w + b
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def sgd(
    w: Array, b: Array, data: Data, *, epochs: int, batch: int, lr: float, seed: int
) -> tuple[Array, Array]:
    """Shuffled mini-batch SGD on softmax cross-entropy (float32 in, float32 out)."""
    x, y = data
    w, b = w.copy(), b.copy()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            idx = order[start : start + batch]
            g = _probs(w, b, x[idx])
            g[np.arange(len(idx)), y[idx]] -= 1.0
            g /= len(idx)
            w -= (lr * (x[idx].T @ g)).astype(np.float32)
            b -= (lr * g.sum(axis=0)).astype(np.float32)
    return w, b


def score(w: Array, b: Array, data: Data) -> tuple[float, dict[str, float]]:
    x, y = data
    p = _probs(w, b, x)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    return loss, {"accuracy": float((p.argmax(axis=1) == y).mean())}


class LogRegNumPyClient:
    """A Flower NumPyClient in shape (the tests also subclass the real one)."""

    def __init__(self, client_id: str) -> None:
        self.train, self.test = client_data(client_id)

    def get_parameters(self, config: dict[str, Any]) -> list[Array]:
        return [np.zeros((FEATURES, CLASSES), np.float32), np.zeros(CLASSES, np.float32)]

    def fit(self, parameters: list[Array], config: dict[str, Any]) -> tuple[list[Array], int, dict]:
        w, b = sgd(
            *parameters,
            self.train,
            epochs=int(config["local_epochs"]),
            batch=int(config["batch_size"]),
            lr=float(config["learning_rate"]),
            seed=int(config["seed"]),
        )
        return [w, b], len(self.train[1]), {"note": "str metrics are dropped", "steps": 3}

    def evaluate(self, parameters: list[Array], config: dict[str, Any]) -> tuple[float, int, dict]:
        loss, metrics = score(*parameters, self.test)
        return loss, len(self.test[1]), metrics


def native_client(client_id: str) -> NumpyClient:
    """The same training as a native fedhive client."""

    def train(weights: Weights, data: Data, config: ClientConfig, context: Context) -> tuple:
        w, b = sgd(
            weights["w"],
            weights["b"],
            data,
            epochs=config.local_epochs,
            batch=config.batch_size,
            lr=config.learning_rate,
            seed=context.seed.torch_seed,
        )
        return Weights({"w": w, "b": b}), len(data[1]), {"steps": 3}

    def evaluate(weights: Weights, data: Data, config: ClientConfig, context: Context) -> tuple:
        loss, metrics = score(weights["w"], weights["b"], data)
        return loss, len(data[1]), metrics

    train_data, test_data = client_data(client_id)
    return NumpyClient(train=train, evaluate=evaluate, data=train_data, test_data=test_data)


def build(ctx: AppContext) -> SimulationApp:
    """``[app] flavour = "flower" | "native"``: the same federation either way."""
    flavour = ctx.params.get("flavour", "flower")
    initial = initial_weights(LogRegNumPyClient(CLIENT_IDS[0]), names=["w", "b"])

    def client_fn(client_id: str) -> Any:
        if flavour == "native":
            return native_client(client_id)
        return FlowerClient(LogRegNumPyClient(client_id))

    return SimulationApp(
        server=ServerApp(initial_weights=initial),
        client=ClientApp(client_fn=client_fn),
        client_ids=CLIENT_IDS,
    )
