"""synthetic-logreg: multinomial logistic regression in NumPy on Synthetic(1, 1).

The data is the FedProx paper's Synthetic(alpha, beta) (Li et al., MLSys 2020): 30
devices whose features and labelling functions both differ. Each device is a client with
its own 90/10 train/test split; the server evaluates on the union of the test splits.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from fedhive import (
    AppContext,
    ClientApp,
    ClientConfig,
    Context,
    FitResult,
    ServerApp,
    SimulationApp,
    Weights,
)
from fedhive.client import scaffold
from fedhive.client.numpy import NumpyClient
from fedhive.client.proximal import proximal_coefficient
from fedhive.core import run_stream
from fedhive.simulation.datasets import Dataset, synthetic

Data = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


def _softmax_loss(
    weights: Mapping[str, npt.NDArray[np.float32]],
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
) -> tuple[float, npt.NDArray[np.float64]]:
    logits = x @ weights["w"] + weights["b"]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(len(y)), y] + 1e-12).mean()
    return float(loss), probs


def train(weights: Weights, data: Data, config: ClientConfig, context: Context) -> FitResult:
    """Mini-batch SGD on the softmax cross-entropy (plus FedProx's proximal term when the
    strategy sets ``proximal_mu``: Li et al. 2020, eq. 2; and SCAFFOLD's drift correction
    when the strategy sends control variates: Karimireddy et al. 2020, Alg. 1)."""
    x, y = data
    mu = proximal_coefficient(config)
    control = scaffold.correction(context)  # SCAFFOLD's c - c_i, when the strategy sends c
    w, b = weights["w"].copy(), weights["b"].copy()
    rng = context.numpy_rng()
    steps = 0
    for _ in range(config.local_epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            _, probs = _softmax_loss({"w": w, "b": b}, x[batch], y[batch])
            probs[np.arange(len(batch)), y[batch]] -= 1.0
            probs /= len(batch)
            grad_w, grad_b = x[batch].T @ probs, probs.sum(axis=0)
            if mu:
                grad_w = grad_w + mu * (w - weights["w"])
                grad_b = grad_b + mu * (b - weights["b"])
            if control is not None:
                grad_w, grad_b = grad_w + control["w"], grad_b + control["b"]
            w -= (config.learning_rate * grad_w).astype(np.float32)
            b -= (config.learning_rate * grad_b).astype(np.float32)
            steps += 1
    loss, _ = _softmax_loss({"w": w, "b": b}, x, y)
    new = Weights({"w": w, "b": b})
    if control is None:
        return FitResult(weights=new, num_examples=len(y), metrics={"train_loss": loss})
    delta = Weights({"w": w - weights["w"], "b": b - weights["b"]})
    aux = scaffold.finish(context, delta, steps, config.learning_rate)
    return FitResult(weights=new, num_examples=len(y), metrics={"train_loss": loss}, aux=aux)


def evaluate(
    weights: Weights, data: Data, config: ClientConfig, context: Context
) -> tuple[float, int, dict[str, float]]:
    """Loss and accuracy on a test split."""
    x, y = data
    if len(y) == 0:
        return 0.0, 0, {}
    loss, probs = _softmax_loss(weights, x, y)
    return loss, len(y), {"accuracy": float((probs.argmax(axis=1) == y).mean())}


def build(ctx: AppContext) -> SimulationApp:
    """Generate the devices and wire them as NumPy clients."""
    params = ctx.params
    devices: list[Dataset] = synthetic(
        float(params.get("alpha", 1.0)),
        float(params.get("beta", 1.0)),
        num_devices=int(params.get("num_devices", 30)),
        rng=run_stream(ctx.seed).child("app").child("synthetic").numpy(),
        max_samples=params.get("max_samples"),
    )
    num_features, num_classes = devices[0].x_train.shape[1], 10
    clients = {f"device-{i:02d}": d for i, d in enumerate(devices)}

    def client_fn(client_id: str) -> NumpyClient:
        d = clients[client_id]
        return NumpyClient(
            train=train,
            evaluate=evaluate,
            data=(d.x_train, d.y_train),
            test_data=(d.x_test, d.y_test),
        )

    x_test = np.concatenate([d.x_test for d in devices])
    y_test = np.concatenate([d.y_test for d in devices])
    x_train = np.concatenate([d.x_train for d in devices])
    y_train = np.concatenate([d.y_train for d in devices])

    def central(weights: Weights) -> dict[str, float]:
        loss, probs = _softmax_loss(weights, x_test, y_test)
        train_loss, _ = _softmax_loss(weights, x_train, y_train)  # what FedProx plots
        accuracy = float((probs.argmax(axis=1) == y_test).mean())
        return {"loss": loss, "accuracy": accuracy, "train_loss": train_loss}

    initial = Weights(
        {
            "w": np.zeros((num_features, num_classes), np.float32),
            "b": np.zeros(num_classes, np.float32),
        }
    )
    return SimulationApp(
        server=ServerApp(initial_weights=initial, evaluate_fn=central),
        client=ClientApp(client_fn=client_fn),
        client_ids=sorted(clients),
    )
