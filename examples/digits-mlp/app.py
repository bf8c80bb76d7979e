"""digits-mlp: a PyTorch MLP (64-32-10) on scikit-learn's digits, split non-IID.

The 8x8 digit images (1797, bundled with scikit-learn, no download) are split 80/20
into a server test set and a training set; the training set goes to ``num_clients``
clients with Dirichlet(alpha) label skew. Each client holds out ``local_test_fraction``
of its own data for federated evaluation.

The app has two halves: :func:`server` (the seeded initial model and the evaluation on
the server's test set) and :func:`client` (each client's own share). A simulation runs
both (:func:`build`); a deployed server runs only the first (``[server] app``), and each
``fedhive client --app app:client`` process only the second.
"""

from __future__ import annotations

import torch
from torch import nn

from fedhive import AppContext, ClientApp, ServerApp, SimulationApp
from fedhive.client.torch import TorchClient, load_into_module, weights_from_module
from fedhive.core import SeedStream, Weights, run_stream
from fedhive.simulation.datasets import Dataset, load_digits
from fedhive.simulation.partition import dirichlet, shards

Share = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def make_model(hidden: int = 32) -> nn.Module:
    """The MLP: 64 inputs, one hidden ReLU layer, 10 classes."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _digits(ctx: AppContext) -> tuple[SeedStream, Dataset]:
    """The app's random stream and the server/clients split of the digits."""
    # A model this small trains fastest on one thread; more threads only contend,
    # all the more with several worker processes on a few cores.
    torch.set_num_threads(int(ctx.params.get("torch_threads", 1)))
    stream = run_stream(ctx.seed).child("app")
    data = load_digits(
        test_fraction=float(ctx.params.get("test_fraction", 0.2)),
        rng=stream.child("split").numpy(),
    )
    return stream, data


def server(ctx: AppContext) -> ServerApp:
    """The seeded initial model and the evaluation on the server's test set."""
    stream, data = _digits(ctx)
    hidden = int(ctx.params.get("hidden", 32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream.child("init").torch_seed)
        initial = weights_from_module(make_model(hidden))
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    server_model = make_model(hidden)

    def evaluate(weights: Weights) -> dict[str, float]:
        load_into_module(server_model, weights)
        with torch.no_grad():
            logits = server_model(x_test)
            loss = nn.functional.cross_entropy(logits, y_test).item()
            accuracy = (logits.argmax(dim=1) == y_test).double().mean().item()
        return {"loss": loss, "accuracy": accuracy}

    return ServerApp(initial_weights=initial, evaluate_fn=evaluate)


def _shares(ctx: AppContext) -> dict[str, Share]:
    """Every client's (train, local test) share of the training set, by client id.

    A deployed client derives the same partition from the same config and seed, so a
    deployment of N clients trains on exactly the shares a simulation would.
    """
    params = ctx.params
    stream, data = _digits(ctx)
    num_clients = int(params.get("num_clients", 100))
    rng = stream.child("partition").numpy()
    if params.get("partition", "dirichlet") == "shards":  # 2 label-sorted shards each
        partition = shards(data.y_train, num_clients, rng)
    else:
        alpha = float(params.get("alpha", 0.5))
        partition = dirichlet(
            data.y_train, num_clients, alpha, rng, min_size=int(params.get("min_size", 1))
        )
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
    return local


def _client_app(ctx: AppContext, local: dict[str, Share]) -> ClientApp:
    model = make_model(int(ctx.params.get("hidden", 32)))  # each task loads its weights

    def client_fn(client_id: str) -> TorchClient:
        train, test = local[client_id]
        return TorchClient(model=model, train_data=train, test_data=test)

    return ClientApp(client_fn=client_fn)


def client(ctx: AppContext) -> ClientApp:
    """The clients, each on its own share (``fedhive client --app app:client``)."""
    return _client_app(ctx, _shares(ctx))


def build(ctx: AppContext) -> SimulationApp:
    """Both halves, for a simulation of every client."""
    local = _shares(ctx)
    return SimulationApp(
        server=server(ctx), client=_client_app(ctx, local), client_ids=sorted(local)
    )
