"""FedProx's client side: the proximal term and partial work the server asks for.

FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020,
eq. 2) has client k minimise ``h_k(w; w^t) = F_k(w) + (mu/2) * ||w - w^t||^2`` from the
global weights ``w^t``, and accepts partial work from stragglers (fewer local steps).
The server asks for both by typed extensions of the client config:

- :class:`~fedhive.core.extensions.Proximal`: the coefficient ``mu`` (absent or 0:
  plain local training);
- :class:`~fedhive.core.extensions.PartialWork`: a cap on the optimizer steps of one fit
  (absent: no cap).

``TorchClient`` applies both. A ``NumpyClient``'s ``train`` function adds the term
itself: read ``mu`` with :func:`proximal_coefficient` and add :func:`proximal_gradient` to its
data-loss gradient at every step.
"""

from __future__ import annotations

import numpy as np

from fedhive.core.config import check_real
from fedhive.core.extensions import PartialWork, Proximal
from fedhive.core.messages import ClientConfig
from fedhive.core.weights import Array, Weights

__all__ = ["max_local_steps", "proximal_coefficient", "proximal_gradient"]


def proximal_coefficient(config: ClientConfig) -> float:
    """The proximal coefficient ``mu`` the config asks for (0.0 without :class:`Proximal`)."""
    proximal = config.extension(Proximal)
    return 0.0 if proximal is None else float(proximal.mu)


def max_local_steps(config: ClientConfig) -> int | None:
    """The cap on optimizer steps the config asks for (None without :class:`PartialWork`)."""
    partial = config.extension(PartialWork)
    return None if partial is None else partial.max_local_steps


def proximal_gradient(weights: Weights, global_weights: Weights, mu: float) -> Weights:
    """The gradient ``mu * (w - w^t)`` of the proximal term, tensor by tensor.

    Non-floating tensors (counters such as ``num_batches_tracked``) are not trained and
    get zeros.

    Raises:
        ConfigError: ``mu`` is not a finite number >= 0.
        NameMismatchError, ShapeMismatchError, DTypeMismatchError, NonFiniteError:
            ``global_weights`` do not match ``weights``.
    """
    check_real("mu", mu, low=0)
    global_weights.validate_like(weights)
    return Weights(
        {name: _scaled_difference(w, global_weights[name], mu) for name, w in weights.items()}
    )


def _scaled_difference(w: Array, anchor: Array, mu: float) -> Array:
    if w.dtype.kind not in "fc":
        return np.zeros_like(w)
    difference: Array = np.subtract(w, anchor)
    return np.multiply(difference, w.dtype.type(mu)).astype(w.dtype, copy=False)
