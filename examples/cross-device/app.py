"""cross-device: a million phones, each with a few dozen non-IID samples, made on demand.

Device ``k``'s data follows FedProx's Synthetic(alpha, beta) recipe (Li et al., MLSys
2020; :func:`fedhive.simulation.datasets.synthetic`) around one shared task, so that a
global model has something to learn: a task ``W*, b* ~ N(0, 1)`` from the run seed;
per device ``W_k = W* + N(0, alpha^2)``, ``b_k = b* + N(0, alpha^2)`` (each device labels
a little differently), ``v_k ~ N(B_k, 1)`` with ``B_k ~ N(0, beta^2)`` (its features sit
elsewhere), ``x ~ N(v_k, Sigma)`` with ``Sigma_jj = j^-1.2``, ``y = argmax(x W_k + b_k)``,
and ``10 + Poisson(30)`` samples (a phone holds little). Every draw comes from the run
seed's stream for ``k``, so a device's data is the same each time it is selected, and
nothing is generated before. The client ids are a :class:`~fedhive.VirtualClientIds`
(never a list of a million strings). The model is softmax regression in NumPy; SCAFFOLD
keeps each device's control variate in its persistent state, i.e. in the run's SQLite
state store.
"""

from __future__ import annotations

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
from fedhive.core import run_stream
from fedhive.simulation import VirtualClientIds

FEATURES, CLASSES = 60, 10
Data = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


def task(seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The shared task ``(W*, b*)`` every device's labelling function varies around."""
    rng = run_stream(seed).child("app").child("task").numpy()
    return rng.normal(0, 1, (FEATURES, CLASSES)), rng.normal(0, 1, CLASSES)


def device_data(
    seed: int, index: int, alpha: float, beta: float, shared: tuple[npt.NDArray[np.float64], ...]
) -> tuple[Data, Data]:
    """Device ``index``'s (train, test) split: the same arrays every time it is asked."""
    rng = run_stream(seed).child("app").child("device").child(index).numpy()
    size = 10 + int(rng.poisson(30))
    w = shared[0] + rng.normal(0, alpha, (FEATURES, CLASSES))
    b = shared[1] + rng.normal(0, alpha, CLASSES)
    mean = rng.normal(rng.normal(0, beta), 1, FEATURES)
    x = mean + rng.standard_normal((size, FEATURES)) * np.arange(1, FEATURES + 1) ** -0.6
    y = np.argmax(x @ w + b, axis=1).astype(np.int64)
    cut = int(0.9 * size)
    x32 = x.astype(np.float32)
    return (x32[:cut], y[:cut]), (x32[cut:], y[cut:])


def _probs(
    w: npt.NDArray[np.float32], b: npt.NDArray[np.float32], x: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    logits = x @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def scores(
    weights: Weights, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]
) -> dict[str, float]:
    """Cross-entropy and accuracy of the model on ``(x, y)``."""
    p = _probs(weights["w"], weights["b"], x)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    return {"loss": loss, "accuracy": float((p.argmax(axis=1) == y).mean())}


def train(weights: Weights, data: Data, config: ClientConfig, context: Context) -> FitResult:
    """Mini-batch SGD on the cross-entropy with SCAFFOLD's drift correction."""
    x, y = data
    control = scaffold.correction(context)
    w, b = weights["w"].copy(), weights["b"].copy()
    rng = context.numpy_rng()
    steps = 0
    for _ in range(config.local_epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            p = _probs(w, b, x[batch])
            p[np.arange(len(batch)), y[batch]] -= 1.0
            p /= len(batch)
            grad_w, grad_b = x[batch].T @ p, p.sum(axis=0)
            if control is not None:
                grad_w, grad_b = grad_w + control["w"], grad_b + control["b"]
            w -= (config.learning_rate * grad_w).astype(np.float32)
            b -= (config.learning_rate * grad_b).astype(np.float32)
            steps += 1
    new = Weights({"w": w, "b": b})
    if control is None:
        return FitResult(weights=new, num_examples=len(y))
    delta = Weights({"w": w - weights["w"], "b": b - weights["b"]})
    aux = scaffold.finish(context, delta, steps, config.learning_rate)
    return FitResult(weights=new, num_examples=len(y), aux=aux)


def evaluate(
    weights: Weights, data: Data, config: ClientConfig, context: Context
) -> tuple[float, int, dict[str, float]]:
    """Loss and accuracy on a device's test split."""
    x, y = data
    if len(y) == 0:
        return 0.0, 0, {}
    found = scores(weights, x, y)
    return found["loss"], len(y), {"accuracy": found["accuracy"]}


def build(ctx: AppContext) -> SimulationApp:
    """A million virtual devices; the server evaluates on ``eval_devices`` of them."""
    params = ctx.params
    alpha, beta = float(params.get("alpha", 0.5)), float(params.get("beta", 0.5))
    ids = VirtualClientIds(int(params.get("num_devices", 1_000_000)), prefix="phone-")
    shared = task(ctx.seed)

    def client_fn(client_id: str) -> NumpyClient:
        train_data, test_data = device_data(ctx.seed, ids.index(client_id), alpha, beta, shared)
        return NumpyClient(train=train, evaluate=evaluate, data=train_data, test_data=test_data)

    held_out = [
        device_data(ctx.seed, k, alpha, beta, shared)[1]
        for k in range(int(params.get("eval_devices", 500)))
    ]
    x_test = np.concatenate([x for x, _ in held_out])
    y_test = np.concatenate([y for _, y in held_out])

    def central(weights: Weights) -> dict[str, float]:
        return scores(weights, x_test, y_test)

    initial = Weights(
        {"w": np.zeros((FEATURES, CLASSES), np.float32), "b": np.zeros(CLASSES, np.float32)}
    )
    return SimulationApp(
        server=ServerApp(initial_weights=initial, evaluate_fn=central),
        client=ClientApp(client_fn=client_fn),
        client_ids=ids,
    )
