"""Your own PyTorch training loop as a fedhive Client, in a few lines.

:class:`TorchLoopClient` wraps an ``nn.Module`` and two plain functions::

    def train(model, config, context) -> int:            # examples seen (or (n, metrics))
    def evaluate(model, config, context) -> (loss, n, metrics):

Before each call the received weights are loaded into ``model`` (parameters and
buffers); after ``train`` the module's ``state_dict`` is read back as the update, the
same as :class:`~fedhive.client.torch.TorchClient` does. ``train`` runs with the module
in train mode inside a fork of torch's global generator seeded from this client's round
stream (dropout and ``torch.randperm`` without a generator are then reproducible and do
not leak out); ``evaluate`` runs in eval mode under ``torch.no_grad()``.

The loop owns the optimisation, so it also owns the instructions that change it: read
``fedhive.client.proximal.proximal_coefficient(config)`` for FedProx and
``max_local_steps(config)`` for partial work. DP-SGD and SCAFFOLD's control variates
need fedhive's own loop (:class:`~fedhive.client.torch.TorchClient`) and are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fedhive.client import scaffold
from fedhive.client.base import Context
from fedhive.client.numpy import _evaluate_result
from fedhive.client.torch import _rng_fork, load_into_module, weights_from_module
from fedhive.core.extensions import DpSgd
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult, check_metrics
from fedhive.core.weights import Weights
from fedhive.errors import ClientError, ConfigError, MissingDependencyError

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        "fedhive.client.torch_loop needs PyTorch: pip install 'fedhive[torch]'"
    ) from exc

__all__ = ["LoopEvaluateFn", "LoopTrainFn", "TorchLoopClient"]

LoopTrainFn = Callable[[nn.Module, ClientConfig, Context], Any]
"""``train(model, config, context)`` returning ``num_examples`` or ``(num_examples, metrics)``."""

LoopEvaluateFn = Callable[[nn.Module, ClientConfig, Context], Any]
"""``evaluate(model, config, context)`` returning ``(loss, num_examples[, metrics])``."""


class TorchLoopClient:
    """A Client whose local training is the user's own PyTorch loop.

    Args:
        model: the ``nn.Module`` the loop trains (may be shared by many clients: every
            call loads its weights first).
        train: ``train(model, config, context)``; returns the number of examples it
            trained on, or ``(num_examples, metrics)``.
        evaluate: ``evaluate(model, config, context)``; returns ``(loss, num_examples)``
            or ``(loss, num_examples, metrics)``. None: evaluation reports 0 examples.
    """

    def __init__(
        self, model: nn.Module, *, train: LoopTrainFn, evaluate: LoopEvaluateFn | None = None
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model: expected an nn.Module, got {type(model).__name__}")
        self.model = model
        self._train = train
        self._evaluate = evaluate

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Load ``weights``, run the loop, return the module's new weights.

        Raises:
            ClientError: DP-SGD or SCAFFOLD was asked for, or ``train`` returned
                something else than the documented forms.
        """
        if config.extension(DpSgd) is not None:
            raise ClientError("DP-SGD needs fedhive's own loop: use TorchClient")
        if scaffold.correction(context) is not None:
            raise ClientError("SCAFFOLD's control variates need fedhive's own loop: TorchClient")
        model = self.model
        load_into_module(model, weights)
        model.train()
        with _rng_fork(context.seed.torch_seed, _device(model)):
            value = self._train(model, config, context)
        num_examples, metrics = _train_result(value)
        if num_examples == 0:
            return FitResult(weights=weights, num_examples=0)
        return FitResult(
            weights=weights_from_module(model), num_examples=num_examples, metrics=metrics
        )

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Load ``weights`` and run the user's ``evaluate`` (eval mode, no gradients)."""
        if self._evaluate is None:
            return EvaluateResult(loss=0.0, num_examples=0)
        model = self.model
        load_into_module(model, weights)
        model.eval()
        with torch.no_grad():
            value = self._evaluate(model, config, context)
        return _evaluate_result(value)


def _device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.state_dict().values()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _train_result(value: object) -> tuple[int, dict[str, float]]:
    """``num_examples`` or ``(num_examples, metrics)`` as a checked pair."""
    number, metrics = value if isinstance(value, tuple) and len(value) == 2 else (value, {})
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ClientError(
            f"train must return num_examples (an int >= 0) or (num_examples, metrics), "
            f"got {value!r}"
        )
    if not isinstance(metrics, Mapping):
        raise ClientError(f"train returned metrics of type {type(metrics).__name__}, not a dict")
    return number, check_metrics(metrics, what="train's metrics")
