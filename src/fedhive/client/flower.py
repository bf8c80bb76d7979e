"""Flower interop: a Flower ``NumPyClient`` runs unchanged as a fedhive Client.

Flower's NumPy client speaks lists of arrays and a config dict; fedhive speaks named,
ordered :class:`~fedhive.core.weights.Weights` and a typed
:class:`~fedhive.core.messages.ClientConfig`. :class:`FlowerClient` translates:

- **Parameters, by order.** The model's tensors go to ``fit``/``evaluate`` as a list in
  the order of the weights' names; the list ``fit`` returns is named back in the same
  order (a different length is a client error). Each returned array is cast to the dtype
  of the tensor it replaces, since Flower does not fix dtypes and fedhive's server checks
  them (a shape that differs is refused by that check).
- **Config.** Flower's dict holds ``local_epochs``, ``batch_size``, ``learning_rate``,
  ``server_round`` (the fedhive round), ``client_id``, ``seed`` (this client's 63-bit
  seed for the round: seed the client's own generators from it to make a run
  reproducible), ``proximal_mu`` under FedProx (the key Flower's own FedProx sends),
  and every ``[client] extra`` scalar under its own name.
- **Metrics.** Flower allows str and bytes metric values; fedhive aggregates numbers, so
  only int and float values are kept (bools and the rest are dropped).

Instructions a NumPy client cannot follow are refused with a :class:`ClientError`
rather than ignored: DP-SGD, partial work (``max_local_steps``) and SCAFFOLD's control
variates. What the pipeline does after ``fit`` (clipping and noise, compression, secure
aggregation) applies as for any client.

Accepted: any object with the NumPyClient methods (``fit``, and optionally
``evaluate``) -- no ``flwr`` import is needed -- and what Flower's ``to_client()``
returns (its wrapper is unwrapped through ``.numpy_client``). A Flower ``ClientApp`` is
not accepted: it runs Flower's own message protocol; build the ``NumPyClient`` its
``client_fn`` builds instead, by client id (see :class:`FlowerClient`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fedhive.client import scaffold
from fedhive.client.base import Context
from fedhive.client.numpy import _evaluate_result
from fedhive.client.proximal import proximal_coefficient
from fedhive.core.extensions import DpSgd, PartialWork
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult, check_metrics
from fedhive.core.weights import Weights
from fedhive.errors import ClientError, ConfigError

__all__ = ["FlowerClient", "NumPyClientLike", "flower_config", "initial_weights"]

FlowerScalar = bool | bytes | float | int | str
FlowerConfig = dict[str, FlowerScalar]
Arrays = list[np.ndarray[Any, Any]]


@runtime_checkable
class NumPyClientLike(Protocol):
    """The part of Flower's ``NumPyClient`` that fedhive calls."""

    def fit(self, parameters: Arrays, config: FlowerConfig) -> tuple[Arrays, int, Any]:
        """Train from ``parameters``; return (parameters, num_examples, metrics)."""
        ...


def _unwrap(client: object) -> NumPyClientLike:
    """The NumPy client itself: Flower's ``to_client()`` wrapper keeps it as ``numpy_client``."""
    inner = getattr(client, "numpy_client", None)
    candidate = inner if inner is not None else client
    if not isinstance(candidate, NumPyClientLike):
        raise ConfigError(
            f"{type(client).__name__}: expected a Flower NumPyClient (an object with "
            "fit(parameters, config) and evaluate(parameters, config))"
        )
    return candidate


def _refuse_unfollowable(config: ClientConfig, context: Context) -> None:
    """Raise for a training instruction a NumPy client cannot follow (fit only)."""
    for kind in (DpSgd, PartialWork):
        if config.extension(kind) is not None:
            raise ClientError(f"a Flower NumPyClient cannot follow the {kind.__name__} instruction")
    if scaffold.correction(context) is not None:
        raise ClientError("a Flower NumPyClient cannot apply SCAFFOLD's control variates")


def flower_config(config: ClientConfig, context: Context) -> FlowerConfig:
    """The Flower config dict a NumPy client receives for ``config`` (see the module)."""
    out: FlowerConfig = dict(config.extra)
    out.update(
        local_epochs=config.local_epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        server_round=context.round,
        client_id=context.client_id,
        seed=context.seed.torch_seed,
    )
    mu = proximal_coefficient(config)
    if mu > 0:
        out["proximal_mu"] = mu
    return out


def _numeric(metrics: object, who: str) -> dict[str, float]:
    """The int and float metrics of a Flower metrics dict (str, bytes and bools dropped)."""
    if not isinstance(metrics, Mapping):
        raise ClientError(f"{who} returned metrics of type {type(metrics).__name__}, not a dict")
    kept = {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    }
    return check_metrics(kept, what=f"{who}'s metrics")


def _named(arrays: object, like: Weights) -> Weights:
    """Flower's list of arrays named in ``like``'s order, each cast to its dtype."""
    if not isinstance(arrays, Sequence) or isinstance(arrays, (str, bytes)):
        raise ClientError(f"fit returned {type(arrays).__name__} as parameters, not a list")
    if len(arrays) != len(like):
        raise ClientError(f"fit returned {len(arrays)} arrays for a model of {len(like)} tensors")
    return Weights(
        {
            name: np.asarray(array).astype(like[name].dtype, copy=False)
            for name, array in zip(like, arrays, strict=True)
        }
    )


class FlowerClient:
    """A fedhive Client running a Flower ``NumPyClient`` (or its ``to_client()``) as is.

    In an app: ``ClientApp(client_fn=lambda cid: FlowerClient(MyFlowerClient(cid)))``.
    Simulation and deployment both run it, as any Client.
    """

    def __init__(self, client: object) -> None:
        self._client = _unwrap(client)

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        """Call the NumPy client's ``fit`` with the weights as a list; name its result back.

        Raises:
            ClientError: an instruction it cannot follow, or a malformed result.
        """
        _refuse_unfollowable(config, context)
        value = self._client.fit(list(weights.values()), flower_config(config, context))
        if not isinstance(value, tuple) or len(value) != 3:
            raise ClientError("fit must return (parameters, num_examples, metrics)")
        arrays, num_examples, metrics = value
        integer = isinstance(num_examples, (int, np.integer)) and not isinstance(num_examples, bool)
        if not integer or num_examples < 0:
            raise ClientError(f"fit returned num_examples={num_examples!r}, not an int >= 0")
        if num_examples == 0:
            return FitResult(weights=weights, num_examples=0)
        return FitResult(
            weights=_named(arrays, weights),
            num_examples=int(num_examples),
            metrics=_numeric(metrics, "fit"),
        )

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        """Call the NumPy client's ``evaluate``; a client without one reports 0 examples."""
        evaluate = getattr(self._client, "evaluate", None)
        if evaluate is None:
            return EvaluateResult(loss=0.0, num_examples=0)
        value = evaluate(list(weights.values()), flower_config(config, context))
        if not isinstance(value, tuple) or len(value) != 3:
            raise ClientError("evaluate must return (loss, num_examples, metrics)")
        loss, num_examples, metrics = value
        return _evaluate_result((loss, num_examples, _numeric(metrics, "evaluate")))


def initial_weights(client: object, names: Sequence[str] | None = None) -> Weights:
    """A server's initial model from a NumPy client's ``get_parameters({})``.

    Flower's arrays have no names: ``names`` gives them, else ``p0000``, ``p0001``, ...
    (only their order reaches a :class:`FlowerClient`).
    """
    inner = _unwrap(client)
    getter = getattr(inner, "get_parameters", None)
    if getter is None:
        raise ConfigError(f"{type(inner).__name__} has no get_parameters(config)")
    arrays = [np.asarray(a) for a in getter({})]
    keys = list(names) if names is not None else [f"p{i:04d}" for i in range(len(arrays))]
    if len(keys) != len(arrays):
        raise ConfigError(f"names: {len(keys)} names for {len(arrays)} arrays")
    return Weights(dict(zip(keys, arrays, strict=True)))
