"""The vectorised backend: a round's qualifying fit tasks trained at once with torch.func.

Clients that qualify are grouped (same architecture, epochs, batch size, learning rate)
and each group trains in one :func:`~fedhive.simulation.backends.vmap_sgd.train_cohort`
call: per-client parameters stacked along a leading axis, ``vmap`` of the per-client
gradient, padded and masked batches, so that each client takes exactly its own SGD
steps on its own batches in its own shuffled order. Every task, vectorised or not, then
goes through the client pipeline (:func:`~fedhive.client.pipeline.run_fit`: budget,
clipping, noise, compression, residuals) with a client whose ``fit`` returns the
precomputed result, so replies are the ones the local backend makes, up to float32
rounding of the batched arithmetic.

A fit task qualifies when all of these hold, otherwise it falls back:

- the client is a :class:`~fedhive.client.torch.TorchClient` itself (not a subclass,
  not wrapped, e.g. by an attack or stragglers) with ``(x, y)`` tensors as train data;
- its optimizer is plain SGD (``optimizer_fn`` builds ``torch.optim.SGD`` without
  momentum, weight decay or ``maximize``); its loss is ``nn.CrossEntropyLoss`` (or
  ``F.cross_entropy``) without class weights, mean-reduced, no label equal to
  ``ignore_index``;
- its config asks for no proximal term, no partial work, no DP-SGD, and the strategy
  sends no auxiliary tensors (no SCAFFOLD);
- its model has no buffers, every parameter trainable, and is built only from
  per-example ``torch.nn`` layers (:data:`PER_EXAMPLE`; ``Sequential`` of them): no
  batch norm, no dropout, no custom ``forward`` (which vmap cannot be trusted with:
  statistics across the batch would see the padded rows).

Clients whose modules print alike (``repr``, which for these layers names every
setting) and hold the same parameter layout share one group. A task that does not
qualify, or whose group fails under ``vmap``, runs on the local backend's path in this
process, with the same client state, in its place in the cohort: never a silent
approximation. Evaluate tasks always take that path. :attr:`VectorizedBackend.stats`
counts vectorised tasks and each fallback reason; each cohort with fallbacks logs one
line on the ``fedhive.simulation`` logger.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedhive.client.base import Client, ClientFn, Context
from fedhive.client.proximal import max_local_steps, proximal_coefficient
from fedhive.client.torch import TorchClient, _slots
from fedhive.core.extensions import DpSgd
from fedhive.core.messages import (
    ClientConfig,
    EvaluateResult,
    EvaluateTask,
    Failure,
    FitResult,
    FitTask,
)
from fedhive.core.rng import SeedStream
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Layout, Weights
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.backends.vmap_sgd import ClientData, PerExampleLoss, train_cohort
from fedhive.simulation.states import StateStore
from fedhive.transport.base import EvaluateOutcome, FitOutcome

log = logging.getLogger("fedhive.simulation")

PER_EXAMPLE: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.LayerNorm,
    nn.Embedding,
    nn.Identity,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Flatten,
)
"""Layers whose output for one example depends on that example alone (and whose
``repr`` names every setting that changes their forward)."""


@dataclass(frozen=True)
class _Job:
    """A qualifying task: its client's module, data, seed, and the group it joins."""

    index: int
    module: nn.Module
    data: ClientData
    loss: PerExampleLoss
    group: tuple[object, ...]


class _Precomputed:
    """The client ``run_fit`` sees for a vectorised task: ``fit`` returns the result
    trained beforehand when the pipeline's context is the one it was trained for."""

    def __init__(self, client: TorchClient, result: FitResult, torch_seed: int) -> None:
        self._client, self._result, self._seed = client, result, torch_seed
        self.used = False

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """The precomputed result (or, should the context's seed differ, a real fit)."""
        if context.seed.torch_seed != self._seed:
            log.warning("vectorized: %s's fit stream moved; training it alone", context.client_id)
            return self._client.fit(weights, config, context)
        self.used = True
        return self._result

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """The client's own evaluation."""
        return self._client.evaluate(weights, config, context)


class VectorizedBackend:
    """Runs a cohort's qualifying fit tasks at once in this process, the rest one by one.

    ``stats`` counts ``"vectorized"`` tasks and ``"fallback: <reason>"`` ones over the
    backend's life.
    """

    def __init__(self, client_fn: ClientFn, states: StateStore | None = None) -> None:
        self._local = LocalBackend(client_fn, states)  # the state and the fallback path
        self.stats: Counter[str] = Counter()

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        """Train the qualifying tasks together, then run every task's pipeline in order."""
        clients = [self._local.build(task.client_id, task.round) for task in tasks]
        start, aux = model.weights.split_aux()
        layout = start.layout()
        reasons: Counter[str] = Counter()
        jobs: dict[int, _Job] = {}
        for i, (task, client) in enumerate(zip(tasks, clients, strict=True)):
            if isinstance(client, Failure):
                continue
            job = _qualify(i, task, client, layout, aux)
            if isinstance(job, str):
                reasons[job] += 1
            else:
                jobs[i] = job
        results = self._train_groups(jobs, tasks, start, reasons)
        for reason, count in reasons.items():
            self.stats[f"fallback: {reason}"] += count
        if reasons:
            listed = ", ".join(f"{reason} ({count})" for reason, count in sorted(reasons.items()))
            log.info(
                "vectorized: %d of %d fit tasks fell back: %s",
                sum(reasons.values()),
                len(tasks),
                listed,
            )
        for i, (task, client) in enumerate(zip(tasks, clients, strict=True)):
            if isinstance(client, Failure):
                yield client
            elif i not in results:
                yield self._local.fit_one(client, task, model)
            else:
                assert isinstance(client, TorchClient)
                runs = _Precomputed(client, results[i], jobs[i].data.torch_seed)
                outcome = self._local.fit_one(runs, task, model)
                self.stats["vectorized" if runs.used else "fallback: fit stream moved"] += 1
                yield outcome

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run each evaluate task in turn (the local backend's path)."""
        return self._local.evaluate(tasks, model)

    def close(self) -> None:
        """Close the state store (an in-memory one drops the states)."""
        self._local.close()

    def _train_groups(
        self,
        jobs: dict[int, _Job],
        tasks: Sequence[FitTask],
        start: Weights,
        reasons: Counter[str],
    ) -> dict[int, FitResult]:
        groups: dict[tuple[object, ...], list[_Job]] = {}
        for job in jobs.values():
            groups.setdefault(job.group, []).append(job)
        results: dict[int, FitResult] = {}
        for members in groups.values():
            config = tasks[members[0].index].config
            template = members[0].module
            if not template.training:
                template.train()  # as TorchClient.fit leaves it
            device = next(template.parameters()).device
            params = {n: torch.from_numpy(np.array(a)).to(device) for n, a in start.items()}
            try:
                trained = train_cohort(
                    template,
                    params,
                    [job.data for job in members],
                    epochs=config.local_epochs,
                    batch_size=config.batch_size,
                    learning_rate=config.learning_rate,
                    loss=members[0].loss,
                )
            except Exception as exc:  # e.g. an op vmap cannot batch: train them one by one
                reasons[f"vmap failed: {type(exc).__name__}"] += len(members)
                continue
            for job, out in zip(members, trained, strict=True):
                weights = Weights({n: t.detach().cpu().numpy() for n, t in out.params.items()})
                metrics = {"train_loss": out.train_loss}
                results[job.index] = FitResult(
                    weights=weights, num_examples=out.num_examples, metrics=metrics
                )
        return results


def _qualify(index: int, task: FitTask, client: Client, layout: Layout, aux: Weights) -> _Job | str:
    """The task's job, or why it cannot be vectorised."""
    if type(client) is not TorchClient:
        return f"client {type(client).__name__}"
    config = task.config
    if aux:
        return "auxiliary tensors (SCAFFOLD)"
    if proximal_coefficient(config) > 0 or max_local_steps(config) is not None:
        return "proximal term or partial work"
    if config.extension(DpSgd) is not None:
        return "DP-SGD"
    data = client._train
    if not isinstance(data, tuple):
        return "train data not (x, y) tensors"
    x, y = data
    loss = _per_example_loss(client._loss_fn, y)
    if loss is None:
        return "loss not plain cross-entropy"
    if not _plain_sgd(client, config):
        return "optimizer not plain SGD"
    try:
        module = client.model
    except Exception:
        return "model factory failed"
    group = _group(module, layout)
    if group is None:
        return "model not vectorisable"
    if len(y) == 0:
        return "no train data"
    seed = SeedStream(task.seed)  # the pipeline's fit context's stream (its path is a name)
    key = (*group, config.local_epochs, config.batch_size, config.learning_rate, x.dtype)
    return _Job(index, module, ClientData(x, y, seed.torch_seed), loss, key)


def _per_example_loss(loss_fn: object, y: torch.Tensor) -> PerExampleLoss | None:
    """The per-example form of a plain cross-entropy ``loss_fn``; None for any other."""
    smoothing, ignore = 0.0, -100
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        if loss_fn.weight is not None or loss_fn.reduction != "mean":
            return None
        smoothing, ignore = loss_fn.label_smoothing, loss_fn.ignore_index
    elif loss_fn is not nn.functional.cross_entropy:
        return None
    if not y.is_floating_point() and bool((y == ignore).any()):
        return None  # torch's mean skips ignored rows, all-ignored gives nan: not ours

    def per_example(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            outputs, target, reduction="none", label_smoothing=smoothing
        )

    return per_example


_SGD_PROBES: dict[tuple[object, ...], bool] = {}


def _plain_sgd(client: TorchClient, config: ClientConfig) -> bool:
    """Whether ``client``'s optimizer_fn builds SGD at ``config``'s learning rate with no
    momentum, weight decay or maximize (probed on a throwaway parameter, ~3 ms: cached
    for plain functions, whose answer depends only on their code and the config)."""
    fn = client._optimizer_fn
    code = getattr(fn, "__code__", None)
    plain = code is not None and not getattr(fn, "__closure__", None)
    key = (
        code,
        id(getattr(fn, "__globals__", None)),
        getattr(fn, "__defaults__", None),
        repr(config),
    )
    if plain and key in _SGD_PROBES:
        return _SGD_PROBES[key]
    answer = _probe_sgd(client, config)
    if plain:
        if len(_SGD_PROBES) > 1024:
            _SGD_PROBES.clear()
        _SGD_PROBES[key] = answer
    return answer


def _probe_sgd(client: TorchClient, config: ClientConfig) -> bool:
    try:
        optimizer = client._optimizer_fn([nn.Parameter(torch.zeros(1))], config)
    except Exception:
        return False
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    return (
        float(group["lr"]) == config.learning_rate
        and group["momentum"] == 0
        and group["weight_decay"] == 0
        and not group["maximize"]
    )


# A module's key is read once and reused while TorchClient's cached view of its state
# (the same tensors, shapes and dtypes: see fedhive.client.torch._slots) still holds.
_GROUPS: weakref.WeakKeyDictionary[nn.Module, tuple[object, tuple[object, ...] | None]] = (
    weakref.WeakKeyDictionary()
)


def _group(module: nn.Module, layout: Layout) -> tuple[object, ...] | None:
    """A key equal for modules that compute the same function of the same parameters;
    None when ``module`` is not one of those :data:`PER_EXAMPLE` builds."""
    slots = _slots(module)
    cached = _GROUPS.get(module)
    if cached is not None and cached[0] is slots:
        key = cached[1]
    else:
        key = _read_group(module)
        _GROUPS[module] = (slots, key)
    if key is None or key[1] != layout:
        return None
    return key


def _read_group(module: nn.Module) -> tuple[object, ...] | None:
    """The key itself (see :func:`_group`)."""
    if any(type(m) not in PER_EXAMPLE for m in module.modules()):
        return None
    if any(isinstance(m, nn.Flatten) and m.start_dim <= 0 for m in module.modules()):
        return None
    if list(module.buffers()):
        return None
    named = list(module.named_parameters())
    if [name for name, _ in named] != list(_slots(module).names):
        return None
    if not all(p.requires_grad for _, p in named):
        return None
    devices = tuple(p.device for _, p in named)
    return (repr(module), _slots(module).layout, devices)
