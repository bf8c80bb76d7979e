"""Plain SGD for a cohort of clients at once: stacked parameters, ``vmap(grad(loss))``.

Every client trains the same architecture on its own ``(x, y)`` tensors from the same
starting weights. Client ``c`` takes exactly the steps :class:`~fedhive.client.torch.TorchClient`
would: per epoch, ``randperm(n_c)`` from a generator seeded with the client's
``torch_seed`` (no permutation when ``n_c <= batch_size``, as there), batches of
``batch_size`` in that order, the last one shorter. All clients step together: at global
step ``t`` each client's batch is padded to the cohort's batch length with rows masked
out of its loss (so a padded row has no gradient), and a client whose ``T_c`` steps are
done keeps its parameters (``torch.where``). The per-client loss is the masked mean of
the per-example loss, i.e. the mean over the real rows: the gradient TorchClient's
mean-reduced loss has, up to float32 rounding of the batched matmuls and of the sums.

This is correct only for models whose forward treats each example on its own (no
statistics across the batch, no randomness): :mod:`.vectorized` decides which qualify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

__all__ = ["ClientData", "Trained", "batch_orders", "train_cohort"]

PerExampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(outputs, y) -> (batch,)`` per-example losses (``reduction="none"``)."""


@dataclass(frozen=True)
class ClientData:
    """One client of a cohort: its train tensors and the seed of its shuffling."""

    x: torch.Tensor
    y: torch.Tensor
    torch_seed: int


@dataclass(frozen=True)
class Trained:
    """A client's trained parameters (numpy-ready, CPU), examples and last-epoch loss."""

    params: dict[str, torch.Tensor]
    num_examples: int
    train_loss: float


def batch_orders(n: int, batch_size: int, epochs: int, torch_seed: int) -> list[torch.Tensor]:
    """The row indices of each of a client's steps, in order, as TorchClient takes them."""
    if n == 0:
        return []
    if n <= batch_size:  # one batch a epoch, unpermuted (TorchClient draws no randperm)
        return [torch.arange(n)] * epochs
    generator = torch.Generator().manual_seed(torch_seed)
    steps: list[torch.Tensor] = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        steps.extend(order[start : start + batch_size] for start in range(0, n, batch_size))
    return steps


def train_cohort(
    module: nn.Module,
    start: dict[str, torch.Tensor],
    clients: list[ClientData],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    loss: PerExampleLoss,
) -> list[Trained]:
    """Train every client (all with ``n_c > 0``) from ``start``; results in their order.

    ``module`` is only the architecture (``functional_call`` runs it on each client's
    parameters); ``start`` holds its trainable parameters by name.
    """
    device = next(iter(start.values())).device
    orders = [batch_orders(len(c.y), batch_size, epochs, c.torch_seed) for c in clients]
    size = len(clients)
    steps = max(len(o) for o in orders)
    rows = max(len(c.y) for c in clients)
    width = min(batch_size, rows)  # a client with n <= batch_size has one n-row batch
    x_all = _stack_padded([c.x for c in clients], rows, device)
    y_all = _stack_padded([c.y for c in clients], rows, device)
    index = torch.zeros(steps, size, width, dtype=torch.long)
    mask = torch.zeros(steps, size, width, dtype=x_all.dtype)
    for c, order in enumerate(orders):
        # Every step but an epoch's last holds `width` rows: pad each epoch to whole steps.
        n, taken = len(clients[c].y), len(order)
        per_epoch = taken // epochs
        flat = torch.zeros(epochs, per_epoch * width, dtype=torch.long)
        flat[:, :n] = torch.cat(order).view(epochs, n)
        index[:taken, c] = flat.view(taken, width)
        real = (torch.arange(per_epoch * width) < n).to(mask.dtype)
        mask[:taken, c] = real.repeat(epochs).view(taken, width)
    index, mask = index.to(device), mask.to(device)
    active = torch.tensor([[t < len(o) for o in orders] for t in range(steps)], device=device)
    everyone = [all(t < len(o) for o in orders) for t in range(steps)]

    def client_loss(
        params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        per_example = loss(functional_call(module, params, (x,)), y)
        mean = (per_example * m).sum() / m.sum().clamp(min=1)
        return mean, mean.detach()

    step_fn = vmap(grad_and_value(client_loss, has_aux=True), randomness="error")
    params = {
        name: p.detach().unsqueeze(0).expand(size, *p.shape).clone() for name, p in start.items()
    }
    clients_axis = torch.arange(size, device=device).unsqueeze(1)
    losses = []
    for t in range(steps):
        x = x_all[clients_axis, index[t]]
        y = y_all[clients_axis, index[t]]
        grads, (mean, _) = step_fn(params, x, y, mask[t])
        stepped = {name: p.add(grads[name], alpha=-learning_rate) for name, p in params.items()}
        if not everyone[t]:  # clients whose steps are done keep their parameters
            keep = active[t]
            stepped = {
                name: torch.where(keep.view(-1, *[1] * (p.ndim - 1)), p, params[name])
                for name, p in stepped.items()
            }
        params = stepped
        losses.append(mean.detach())
    per_step = torch.stack(losses).cpu().tolist()  # one sync for every step's losses
    return [
        _result(
            c,
            params=params,
            per_step=per_step,
            order=orders[c],
            n=len(clients[c].y),
            epochs=epochs,
        )
        for c in range(size)
    ]


def _stack_padded(tensors: list[torch.Tensor], rows: int, device: torch.device) -> torch.Tensor:
    """``tensors`` (each ``(n_c, ...)``) as one ``(clients, rows, ...)`` tensor, zero-padded."""
    first = tensors[0]
    out = torch.zeros(len(tensors), rows, *first.shape[1:], dtype=first.dtype, device=device)
    for c, tensor in enumerate(tensors):
        out[c, : len(tensor)] = tensor.to(device)
    return out


def _result(
    c: int,
    *,
    params: dict[str, torch.Tensor],
    per_step: list[list[float]],
    order: list[torch.Tensor],
    n: int,
    epochs: int,
) -> Trained:
    """Client ``c``'s parameters and its last epoch's example-weighted mean loss."""
    per_epoch = len(order) // epochs
    last = range(len(order) - per_epoch, len(order))
    total = sum(per_step[t][c] * len(order[t]) for t in last)
    return Trained(
        params={name: p[c] for name, p in params.items()},
        num_examples=n,
        train_loss=total / n,
    )
