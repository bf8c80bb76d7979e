"""SCAFFOLD's client side: control variates that correct local drift.

SCAFFOLD (Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", ICML 2020, Alg. 1) has client i take local steps
``y <- y - lr * (g_i(y) - c_i + c)`` with the server's control variate ``c`` and its own
``c_i``, then update its variate by option II: ``c_i+ = c_i - c + (x - y) / (K * lr)``
(K local steps from the global model x), and return ``dc_i = c_i+ - c_i`` beside its
model update.

The server's ``c`` arrives in :attr:`Context.aux` under ``@scaffold/<parameter>``; the
client's ``c_i`` lives in its persistent :attr:`Context.state` under
``scaffold/<parameter>`` (zero before its first round). ``TorchClient`` does all of
this; a ``NumpyClient``'s ``train`` adds :func:`correction` to its gradient at every
step and returns ``aux=finish(...)`` in its :class:`~fedhive.core.messages.FitResult`.
Option II assumes plain SGD with ``config.learning_rate``.
"""

from __future__ import annotations

import numpy as np

from fedhive.client.base import Context
from fedhive.core.weights import SCAFFOLD_PREFIX, Array, Weights
from fedhive.errors import ClientError

__all__ = ["STATE_PREFIX", "correction", "finish"]

STATE_PREFIX = "scaffold/"
"""Client-state keys of the client's own control variate: ``scaffold/<parameter>``."""


def correction(context: Context) -> dict[str, Array] | None:
    """``c - c_i`` per parameter the server sent a control variate for; None when the
    strategy is not SCAFFOLD. Add it to the gradient before every local step."""
    server = _server_control(context)
    if server is None:
        return None
    return {name: np.subtract(c, _own(context, name, c)) for name, c in server.items()}


def finish(context: Context, delta: Weights, steps: int, learning_rate: float) -> Weights:
    """Update the client's control variate (option II) and return ``dc_i`` as the
    auxiliary tensors of the fit result.

    Args:
        context: this fit's context (``c`` in ``aux``; ``c_i`` kept in ``state``).
        delta: the model update ``y - x`` of this fit (at least every controlled name).
        steps: local SGD steps taken (K); 0 leaves ``c_i`` unchanged.
        learning_rate: the local SGD learning rate.

    Raises:
        ClientError: the strategy sent no control variates, or ``delta`` lacks one.
    """
    server = _server_control(context)
    if server is None:
        raise ClientError("SCAFFOLD's finish called, but the strategy sent no control variates")
    changes: dict[str, Array] = {}
    for name, c in server.items():
        own = _own(context, name, c)
        if name not in delta:
            raise ClientError(f"the update has no parameter {name!r} to update its variate")
        if steps == 0:
            changes[SCAFFOLD_PREFIX + name] = np.zeros_like(c)
            continue
        step = np.asarray(delta[name], dtype=np.float64) / (steps * learning_rate)
        new = (np.asarray(own, dtype=np.float64) - np.asarray(c, dtype=np.float64) - step).astype(
            c.dtype
        )
        context.state[STATE_PREFIX + name] = new
        changes[SCAFFOLD_PREFIX + name] = np.subtract(new, own)
    return Weights(changes)


def _server_control(context: Context) -> dict[str, Array] | None:
    server = {
        name[len(SCAFFOLD_PREFIX) :]: array
        for name, array in context.aux.items()
        if name.startswith(SCAFFOLD_PREFIX)
    }
    return server or None


def _own(context: Context, name: str, like: Array) -> Array:
    """The client's variate for ``name`` (zeros before its first SCAFFOLD round)."""
    value = context.state.get(STATE_PREFIX + name)
    if isinstance(value, np.ndarray) and value.shape == like.shape:
        return value.astype(like.dtype, copy=False)
    return np.zeros_like(like)
