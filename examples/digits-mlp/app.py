"""digits-mlp: a PyTorch MLP (64-32-10) on scikit-learn's digits, split non-IID.

The 8x8 digit images (1797, bundled with scikit-learn, no download) are split 80/20
into a server test set and a training set; the training set goes to ``num_clients``
clients with Dirichlet(alpha) label skew. Each client holds out ``local_test_fraction``
of its own data for federated evaluation.
"""

from __future__ import annotations

import torch
from torch import nn

from fedhive import AppContext, SimulationApp
from fedhive.client.torch import TorchClient, load_into_module, weights_from_module
from fedhive.core import Weights, run_stream
from fedhive.simulation.datasets import load_digits
from fedhive.simulation.partition import dirichlet, shards


def make_model(hidden: int = 32) -> nn.Module:
    """The MLP: 64 inputs, one hidden ReLU layer, 10 classes."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def client(client_id: str, ctx: AppContext) -> TorchClient:
    """One deployed client (``fedhive client --app app:client``): its own share only.

    It derives the federation's partition from the same config and seed as the server,
    so a deployment of N clients trains on exactly the shares a simulation would.
    """
    return build(ctx).client_fn(client_id)  # type: ignore[return-value]


def build(ctx: AppContext) -> SimulationApp:
    """Build the clients, the seeded initial model and the central evaluation."""
    params = ctx.params
    # A model this small trains fastest on one thread; more threads only contend,
    # all the more with several worker processes on a few cores.
    torch.set_num_threads(int(params.get("torch_threads", 1)))
    stream = run_stream(ctx.seed).child("app")
    data = load_digits(
        test_fraction=float(params.get("test_fraction", 0.2)),
        rng=stream.child("split").numpy(),
    )
    num_clients = int(params.get("num_clients", 100))
    rng = stream.child("partition").numpy()
    if params.get("partition", "dirichlet") == "shards":  # 2 label-sorted shards each
        partition = shards(data.y_train, num_clients, rng)
    else:
        alpha = float(params.get("alpha", 0.5))
        partition = dirichlet(
            data.y_train, num_clients, alpha, rng, min_size=int(params.get("min_size", 1))
        )
    hidden = int(params.get("hidden", 32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream.child("init").torch_seed)
        model = make_model(hidden)
    initial = weights_from_module(model)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    holdout = float(params.get("local_test_fraction", 0.1))
    local = {}
    for i, indices in enumerate(partition.indices):
        idx = torch.from_numpy(indices.copy())  # partition arrays are read-only
        cut = len(idx) - int(holdout * len(idx))
        local[f"client-{i:04d}"] = (
            (x[idx[:cut]], y[idx[:cut]]),
            (x[idx[cut:]], y[idx[cut:]]),
        )

    def client_fn(client_id: str) -> TorchClient:
        train, test = local[client_id]
        return TorchClient(model=model, train_data=train, test_data=test)

    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    server_model = make_model(hidden)

    def evaluate(weights: Weights) -> dict[str, float]:
        load_into_module(server_model, weights)
        with torch.no_grad():
            logits = server_model(x_test)
            loss = nn.functional.cross_entropy(logits, y_test).item()
            accuracy = (logits.argmax(dim=1) == y_test).double().mean().item()
        return {"loss": loss, "accuracy": accuracy}

    return SimulationApp(
        client_fn=client_fn,
        client_ids=sorted(local),
        initial_weights=initial,
        evaluate_fn=evaluate,
    )
