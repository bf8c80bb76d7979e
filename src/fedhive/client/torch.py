"""PyTorch adapter: a Client that trains an ``nn.Module`` on local tensors or a Dataset.

The module's ``state_dict()`` (parameters *and* buffers, e.g. BatchNorm statistics) is the
federated state. A module may be shared by many clients: every call loads its weights.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from fedhive.client import dpsgd, scaffold
from fedhive.client.base import Context
from fedhive.client.proximal import max_local_steps, proximal_coefficient
from fedhive.client.torch_terms import Correction, GradientTerm, Proximal
from fedhive.core.extensions import DpSgd
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.weights import Layout, Weights
from fedhive.errors import ClientError, ConfigError, MissingDependencyError

try:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset, IterableDataset
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        "fedhive.client.torch needs PyTorch: pip install 'fedhive[torch]'"
    ) from exc

__all__ = ["TorchClient", "load_into_module", "weights_from_module"]

Batch = tuple[torch.Tensor, torch.Tensor]
Data = tuple[torch.Tensor, torch.Tensor] | Dataset[Any] | DataLoader[Any]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerFn = Callable[[Iterable[nn.Parameter], ClientConfig], torch.optim.Optimizer]
_Home = tuple[dict[str, Any], str]  # the _parameters or _buffers dict holding a tensor


@dataclass(frozen=True)
class _Slots:
    """A module's state tensors in ``state_dict`` order, where each lives, its layout."""

    names: tuple[str, ...]
    tensors: tuple[torch.Tensor, ...]
    dtypes: tuple[torch.dtype, ...]
    homes: tuple[_Home, ...] | None  # None: some tensor has no home, do not cache
    layout: Layout

    def current(self) -> bool:
        """Whether the module still holds these very tensors, with the same shapes/dtypes."""
        return self.homes is not None and all(
            home.get(key) is t and t.shape == shape and t.dtype == dtype
            for (home, key), t, shape, dtype in zip(
                self.homes, self.tensors, self.layout.shapes, self.dtypes, strict=True
            )
        )


# state_dict() walks every submodule and its hooks: a module's slots are read once and
# re-checked cheaply on each use (same tensor objects, shapes and dtypes; this catches
# .to(), .double() and reassigned parameters, not submodules added after first use).
_SLOTS: weakref.WeakKeyDictionary[nn.Module, _Slots] = weakref.WeakKeyDictionary()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype[Any]:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError as exc:
        raise ClientError(f"tensors of dtype {dtype} have no numpy equivalent") from exc


def _home(module: nn.Module, name: str, tensor: torch.Tensor) -> _Home | None:
    prefix, _, key = name.rpartition(".")
    try:
        owner = module.get_submodule(prefix)
    except AttributeError:
        return None
    homes = (owner._parameters, owner._buffers)
    return next(((home, key) for home in homes if home.get(key) is tensor), None)


def _slots(module: nn.Module) -> _Slots:
    cached = _SLOTS.get(module)
    if cached is not None and cached.current():
        return cached
    state = module.state_dict(keep_vars=True)
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ClientError(f"state_dict entry {name!r} is not a tensor ({type(value)})")
    names, tensors = tuple(state), tuple(state.values())
    homes = tuple(h for n, t in state.items() if (h := _home(module, n, t)) is not None)
    dtypes = tuple(t.dtype for t in tensors)
    shapes = tuple(tuple(t.shape) for t in tensors)
    layout = Layout(names, shapes, tuple(_numpy_dtype(d) for d in dtypes))
    slots = _Slots(names, tensors, dtypes, homes if len(homes) == len(names) else None, layout)
    if slots.homes is not None:
        _SLOTS[module] = slots
    return slots


def weights_from_module(module: nn.Module) -> Weights:
    """Copy a module's ``state_dict`` (parameters and buffers) into :class:`Weights`."""
    return _read(_slots(module))


def _read(slots: _Slots) -> Weights:
    pairs = zip(slots.names, slots.tensors, strict=True)  # copies: the module is reused
    return Weights({name: t.detach().cpu().numpy().copy() for name, t in pairs})


def load_into_module(module: nn.Module, weights: Weights) -> None:
    """Copy ``weights`` into a module's parameters and buffers, in place.

    Raises:
        NameMismatchError, ShapeMismatchError, DTypeMismatchError, NonFiniteError:
            ``weights`` do not match the module's own layout (nothing is copied then).
    """
    _write(_slots(module), weights)


def _write(slots: _Slots, weights: Weights) -> None:
    weights.validate_like(slots.layout)
    with torch.no_grad():
        for tensor, array in zip(slots.tensors, weights.values(), strict=True):
            # torch.from_numpy warns on read-only arrays and refuses negative strides.
            if not (array.flags.writeable and array.flags.c_contiguous):
                array = np.array(array, order="C")  # noqa: PLW2901
            tensor.copy_(torch.from_numpy(array))


def _check_data(data: Any, what: str) -> Data:
    if isinstance(data, (Dataset, DataLoader)):
        return data
    if isinstance(data, tuple) and all(isinstance(t, torch.Tensor) for t in data):
        if len(data) != 2 or min(t.ndim for t in data) == 0 or len(data[0]) != len(data[1]):
            raise ConfigError(f"{what}: expected (x, y) tensors of the same first dimension")
        return (data[0], data[1])
    raise ConfigError(f"{what}: expected a (x, y) tuple of tensors, a Dataset or a DataLoader")


@contextmanager
def _rng_fork(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generator for ``device`` inside a fork that restores it."""
    # Seed only the generators we fork: torch.manual_seed also seeds every accelerator
    # (about 100 us per call even on a CPU-only machine) and that would leak past the fork.
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            index = torch.cuda.current_device() if device.index is None else device.index
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


class TorchClient:
    """A Client training a PyTorch module with a loss and an optimizer on local data.

    Args:
        model: an ``nn.Module`` (may be shared with other clients) or a zero-argument
            factory returning one (called once, on first use).
        train_data: ``(x, y)`` tensors (mini-batched and shuffled here), a ``Dataset``
            (wrapped in a seeded, shuffling ``DataLoader``) or a ``DataLoader`` (as is).
        test_data: the same kinds, or None (evaluate then reports 0 examples).
        loss_fn: a mean-reduced loss ``loss_fn(outputs, y)``; default cross-entropy.
        optimizer_fn: ``optimizer_fn(params, config) -> Optimizer``; default SGD with
            ``lr=config.learning_rate``.

    ``fit`` follows two FedProx extensions of ``config`` (see
    :mod:`fedhive.client.proximal`):

    - :class:`~fedhive.core.extensions.Proximal` ``(mu)``: train on ``loss + (mu/2)*||w - w^t||^2``
      over the trainable parameters (not buffers), ``w^t`` the received weights. The
      term enters through its gradient ``mu*(w - w^t)``, added after ``backward()``;
      ``train_loss`` still reports the data loss. With SGD keep ``learning_rate * mu``
      below 1. Absent or 0: plain local training.
    - :class:`~fedhive.core.extensions.PartialWork` ``(max_local_steps)``: stop after
      that many optimizer steps (a
      straggler's partial work); ``num_examples`` then counts the examples reached, each
      once, ``train_loss`` covers the last epoch begun, and metric ``local_steps`` says
      how many steps were taken. Absent: ``local_epochs`` full epochs.

    Under SCAFFOLD (control variates in ``context.aux``) each step's gradient gets the
    drift correction ``c - c_i`` and the result carries the variate change (see
    :mod:`fedhive.client.scaffold`; option II assumes SGD at ``config.learning_rate``).
    With a :class:`~fedhive.core.extensions.DpSgd` extension in ``config`` it trains
    with DP-SGD through Opacus (:mod:`fedhive.client.dpsgd`; the noise is seeded
    only in simulation), hands the steps' privacy event to the pipeline (a device's
    ledger charges it) and reports their ``dpsgd_epsilon``.
    """

    def __init__(
        self,
        *,
        model: nn.Module | Callable[[], nn.Module],
        train_data: Data,
        test_data: Data | None = None,
        loss_fn: LossFn | None = None,
        optimizer_fn: OptimizerFn | None = None,
    ) -> None:
        if not isinstance(model, nn.Module) and not callable(model):
            raise ConfigError("model: expected an nn.Module or a factory returning one")
        self._model_spec = model
        self._model = model if isinstance(model, nn.Module) else None
        self._train = _check_data(train_data, "train_data")
        self._test = None if test_data is None else _check_data(test_data, "test_data")
        self._loss_fn: LossFn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
        self._optimizer_fn: OptimizerFn = optimizer_fn or (
            lambda params, config: torch.optim.SGD(params, lr=config.learning_rate)
        )

    @property
    def model(self) -> nn.Module:
        """The module this client trains (built by the factory on first access)."""
        if self._model is None:
            built = self._model_spec()
            if not isinstance(built, nn.Module):
                raise ClientError(f"model factory returned {type(built)}, not an nn.Module")
            self._model = built
        return self._model

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Load ``weights``, train ``config.local_epochs`` epochs, return the new weights."""
        mu = proximal_coefficient(config)
        model = self.model
        slots = _slots(model)
        _write(slots, weights)
        device = slots.tensors[0].device if slots.tensors else torch.device("cpu")
        if not model.training:
            model.train()
        terms: list[GradientTerm] = [Proximal(model, mu)] if mu > 0 else []
        control = scaffold.correction(context)
        if control is not None:
            terms.append(Correction(model, control))
        dp = config.extension(DpSgd)
        with _rng_fork(context.seed.torch_seed, device):
            generator = torch.Generator().manual_seed(context.seed.torch_seed)
            optimizer = self._optimizer_fn(model.parameters(), config)
            with ExitStack() as stack:
                trained: nn.Module = model
                if dp is not None:
                    trained, optimizer = stack.enter_context(
                        dpsgd.private(
                            model,
                            optimizer,
                            dp,
                            batch_size=config.batch_size,
                            seed=context.noise_seed("dpsgd"),
                        )
                    )
                examples, steps, train_loss = self._local_training(
                    trained,
                    optimizer,
                    config=config,
                    generator=generator,
                    device=device,
                    terms=terms,
                )
        new = _read(slots) if examples else weights
        aux = None
        if control is not None:
            delta = Weights({name: np.subtract(new[name], weights[name]) for name in control})
            aux = scaffold.finish(context, delta, steps, config.learning_rate)
        if examples == 0:
            return FitResult(weights=weights, num_examples=0, aux=aux)
        metrics = {"train_loss": train_loss}
        if max_local_steps(config) is not None:
            metrics["local_steps"] = steps
        if dp is not None:
            rate = config.batch_size / max(examples, 1)
            metrics["dpsgd_epsilon"] = dpsgd.account(context, dp, steps=steps, sample_rate=rate)
        return FitResult(weights=new, num_examples=examples, metrics=metrics, aux=aux)

    def _local_training(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        config: ClientConfig,
        generator: torch.Generator,
        device: torch.device,
        terms: Sequence[GradientTerm],
    ) -> tuple[int, int, float]:
        """Local epochs (or ``max_local_steps``): examples seen, steps, last loss."""
        cap = max_local_steps(config)
        examples, steps, train_loss = 0, 0, 0.0
        for epoch in range(config.local_epochs):
            if cap is not None and steps == cap:
                break
            batches = _batches(self._train, config.batch_size, generator, device)
            if cap is not None:  # any epoch may be the last one: track every loss
                batches = islice(batches, cap - steps)
            last = cap is not None or epoch == config.local_epochs - 1
            count, total, taken = self._epoch(model, optimizer, batches, last, terms)
            steps += taken
            examples = count if cap is None else max(examples, count)
            if count:  # the loss reported is the last epoch's that saw data
                train_loss = total / count
        return examples, steps, train_loss

    def _epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: Iterator[Batch],
        last: bool,
        terms: Sequence[GradientTerm],
    ) -> tuple[int, float, int]:
        """One pass over ``batches``: examples seen, (``last`` only) loss sum, steps."""
        count, total, steps = 0, 0.0, 0
        for x, y in batches:
            optimizer.zero_grad()
            loss = self._loss_fn(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            for term in terms:
                term.add_gradient()
            optimizer.step()
            count += int(y.shape[0])
            steps += 1
            if last:  # .item() waits for the device: only where the value is reported
                total += float(loss.item()) * int(y.shape[0])
        return count, total, steps

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Load ``weights`` and report the mean loss (and accuracy for class logits)."""
        if self._test is None:
            return EvaluateResult(loss=0.0, num_examples=0)
        model = self.model
        load_into_module(model, weights)
        device = _device(model)
        model.eval()
        count, total, correct, classify = 0, 0.0, 0, True
        with torch.no_grad():
            for x, y in _batches(self._test, config.batch_size, None, device):
                outputs = model(x)
                size = int(y.shape[0])
                count += size
                total += float(self._loss_fn(outputs, y).item()) * size
                classify = classify and _is_classification(outputs, y)
                if classify:
                    correct += int((outputs.argmax(dim=1) == y).sum().item())
        if count == 0:
            return EvaluateResult(loss=0.0, num_examples=0)
        metrics = {"accuracy": correct / count} if classify else {}
        return EvaluateResult(loss=total / count, num_examples=count, metrics=metrics)


def _device(model: nn.Module) -> torch.device:
    tensors = _slots(model).tensors
    return tensors[0].device if tensors else torch.device("cpu")


def _is_classification(outputs: torch.Tensor, y: torch.Tensor) -> bool:
    integer = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    return outputs.ndim == 2 and y.ndim == 1 and integer


def _batches(
    data: Data, batch_size: int, generator: torch.Generator | None, device: torch.device
) -> Iterator[Batch]:
    """Mini-batches ``(x, y)`` on ``device``; shuffled with ``generator`` when given."""
    if isinstance(data, tuple):
        (x, y), n = (t.to(device) for t in data), len(data[0])
        if n <= batch_size:
            # Permuting one batch only reorders rows, unseen by a mean-reduced loss and its
            # gradient; skipping it and the slicing saves ~10% of a tiny model's fit.
            yield from ((x, y),) if n else ()
            return
        if generator is None:
            for start in range(0, n, batch_size):
                yield x[start : start + batch_size], y[start : start + batch_size]
            return
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield x[index], y[index]
        return
    loader = data if isinstance(data, DataLoader) else _loader(data, batch_size, generator)
    for batch in loader:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ClientError(f"data batches must be (x, y) pairs, got {type(batch)}")
        yield batch[0].to(device), batch[1].to(device)


def _loader(data: Dataset[Any], batch_size: int, generator: torch.Generator | None) -> Any:
    """A DataLoader over ``data``, shuffled by ``generator`` where given and possible."""
    sized = not isinstance(data, IterableDataset)
    if sized and len(data) == 0:  # type: ignore[arg-type]  # RandomSampler refuses empty data
        return ()
    shuffle = sized and generator is not None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
