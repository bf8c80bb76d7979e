"""Adaptive server optimizers: FedAdagrad, FedYogi and FedAdam.

Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2, whose update
lines are unnumbered; in its notation (squares, roots, division per coordinate), with
``Δ_t`` the aggregated client update, i.e. the *negative* pseudo-gradient:

- first moment (all three):  ``m_t = β1 m_{t-1} + (1 - β1) Δ_t``
- FedAdagrad:                ``v_t = v_{t-1} + Δ_t²``
- FedYogi:                   ``v_t = v_{t-1} - (1 - β2) Δ_t² sign(v_{t-1} - Δ_t²)``
- FedAdam:                   ``v_t = β2 v_{t-1} + (1 - β2) Δ_t²``
- model (all three):         ``x_{t+1} = x_t + η m_t / (sqrt(v_t) + τ)``

The moments start at ``m = 0`` and ``v = τ²`` (Algorithm 2 asks for ``v_{-1} >= τ²``;
this is the smallest allowed value). As in Algorithm 2 there is no bias correction, unlike
Adam (Kingma & Ba, 2015). Smaller ``τ`` means more adaptivity.

State: :class:`Moments` (``m`` and ``v``, float64 vectors of the flat model size, and
``step``, the number of steps taken), a versioned component state. ``step`` is pure: it
never modifies the arrays it is given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedhive.core.config import check_real
from fedhive.core.serde import RecordValue
from fedhive.core.weights import FloatVector, Layout
from fedhive.errors import ShapeMismatchError
from fedhive.strategy.state import ComponentState, check_size, int_field, vector_field

__all__ = [
    "ADAPTIVE_LEARNING_RATE",
    "Moments",
    "ServerAdagrad",
    "ServerAdam",
    "ServerYogi",
]


@dataclass(frozen=True)
class Moments(ComponentState):
    """An adaptive optimizer's state: first and second moments, and the steps taken."""

    KIND: ClassVar[str] = "adaptive_moments"

    m: FloatVector
    v: FloatVector
    step: int = 0

    def fields(self) -> dict[str, RecordValue]:
        """``m``, ``v`` and ``step``."""
        return {"m": self.m, "v": self.v, "step": self.step}

    @classmethod
    def from_fields(cls, fields: Mapping[str, RecordValue]) -> Moments:
        """The moments; ``m`` and ``v`` must be float vectors of one size."""
        m = vector_field(fields, "m", cls.KIND)
        v = check_size(vector_field(fields, "v", cls.KIND), m.size, "the second moment")
        return cls(m, v, int_field(fields, "step", cls.KIND))


# Defaults: β1 = 0.9 and β2 = 0.99 are the values the paper fixes for FedAdam and FedYogi
# in its experiments; τ = 1e-3 is the adaptivity it recommends from its sweep over τ;
# β1 = 0 makes FedAdagrad plain Adagrad, the form its convergence theorems assume. The
# server learning rate's default, 0.01, is only a starting point: the paper tunes it per task.
ADAPTIVE_LEARNING_RATE = 0.01
_BETA_1 = 0.9
_BETA_2 = 0.99
_TAU = 1e-3


def _check_settings(learning_rate: float, tau: float, betas: dict[str, float]) -> None:
    check_real("learning_rate", learning_rate, low=0, low_open=True)
    check_real("tau", tau, low=0, low_open=True)
    for name, beta in betas.items():
        check_real(name, beta, low=0, high=1, high_open=True)


def _init(layout: Layout, tau: float) -> Moments:
    size = layout.total_size
    return Moments(np.zeros(size), np.full(size, tau * tau, dtype=np.float64), 0)


def _check(moments: Moments, layout: Layout) -> None:
    check_size(moments.m, layout.total_size, "the optimizer's first moment")
    check_size(moments.v, layout.total_size, "the optimizer's second moment")


def _step(
    opt: ServerAdagrad | _Decaying,
    state: Moments,
    weights: FloatVector,
    update: FloatVector,
    second_moment: Callable[[FloatVector, FloatVector], FloatVector],
) -> tuple[Moments, FloatVector]:
    """One round of Algorithm 2; ``second_moment(v_{t-1}, Δ_t²)`` gives ``v_t``."""
    if update.shape != weights.shape:
        raise ShapeMismatchError(
            f"update has shape {update.shape}, weights {weights.shape}", stage="optimize"
        )
    if state.m.shape != weights.shape or state.v.shape != weights.shape:
        raise ShapeMismatchError(
            f"optimizer state: moments of shape {state.m.shape} and {state.v.shape}, "
            f"weights {weights.shape}",
            stage="optimize",
        )
    m = opt.beta_1 * state.m + (1.0 - opt.beta_1) * update
    v = second_moment(state.v, np.square(update))
    new_weights = weights + opt.learning_rate * m / (np.sqrt(v) + opt.tau)
    return Moments(m, v, state.step + 1), new_weights


def _adagrad_v(v: FloatVector, d2: FloatVector) -> FloatVector:
    return v + d2


@dataclass(frozen=True, kw_only=True)
class ServerAdagrad:
    """FedAdagrad: each coordinate's step shrinks with its accumulated squared updates.

    Args:
        learning_rate: server learning rate η (> 0, default 0.01); tune it per task.
        tau: adaptivity τ (> 0), also the square root of the initial second moment.
        beta_1: first-moment decay β1 in [0, 1); 0 is plain Adagrad.
    """

    STATE: ClassVar[type[Moments]] = Moments

    learning_rate: float = ADAPTIVE_LEARNING_RATE
    tau: float = _TAU
    beta_1: float = 0.0

    def __post_init__(self) -> None:
        _check_settings(self.learning_rate, self.tau, {"beta_1": self.beta_1})

    def init(self, layout: Layout) -> Moments:
        """``m = 0`` and ``v = τ²`` in every coordinate, no steps taken."""
        return _init(layout, self.tau)

    def check(self, state: Moments, layout: Layout) -> None:
        """Refuse moments of another model's size (:class:`~fedhive.errors.StateError`)."""
        _check(state, layout)

    def step(
        self, state: Moments, weights: FloatVector, update: FloatVector
    ) -> tuple[Moments, FloatVector]:
        """``v += Δ²``, then step along the first moment."""
        return _step(self, state, weights, update, _adagrad_v)


@dataclass(frozen=True, kw_only=True)
class _Decaying(ABC):
    """What FedYogi and FedAdam share: their settings and their step; a subclass gives
    the second-moment rule ``v_t`` of ``v_{t-1}`` and ``Δ_t²``."""

    STATE: ClassVar[type[Moments]] = Moments

    learning_rate: float = ADAPTIVE_LEARNING_RATE
    beta_1: float = _BETA_1
    beta_2: float = _BETA_2
    tau: float = _TAU

    def __post_init__(self) -> None:
        _check_settings(
            self.learning_rate, self.tau, {"beta_1": self.beta_1, "beta_2": self.beta_2}
        )

    def init(self, layout: Layout) -> Moments:
        """``m = 0`` and ``v = τ²`` in every coordinate, no steps taken."""
        return _init(layout, self.tau)

    def check(self, state: Moments, layout: Layout) -> None:
        """Refuse moments of another model's size (:class:`~fedhive.errors.StateError`)."""
        _check(state, layout)

    def step(
        self, state: Moments, weights: FloatVector, update: FloatVector
    ) -> tuple[Moments, FloatVector]:
        """Move ``v`` by the optimizer's rule, then step along the first moment."""
        return _step(self, state, weights, update, self._second_moment)

    @abstractmethod
    def _second_moment(self, v: FloatVector, d2: FloatVector) -> FloatVector:
        """``v_t`` from ``v_{t-1}`` and ``Δ_t²``."""


@dataclass(frozen=True, kw_only=True)
class ServerYogi(_Decaying):
    """FedYogi: FedAdam whose ``v`` moves additively towards ``Δ²`` (Yogi: Zaheer et al.,
    NeurIPS 2018), so one large update cannot collapse the step size at once:
    ``v -= (1-β2) Δ² sign(v - Δ²)``.

    Args:
        learning_rate: server learning rate η (> 0, default 0.01); tune it per task.
        beta_1: first-moment decay β1 in [0, 1).
        beta_2: second-moment rate β2 in [0, 1).
        tau: adaptivity τ (> 0), also the square root of the initial second moment.
    """

    def _second_moment(self, v: FloatVector, d2: FloatVector) -> FloatVector:
        # sign(0) = 0: a coordinate whose v already equals Δ² keeps it.
        return v - (1.0 - self.beta_2) * d2 * np.sign(v - d2)


@dataclass(frozen=True, kw_only=True)
class ServerAdam(_Decaying):
    """FedAdam: Adam on the server, without Adam's bias correction (as in Algorithm 2):
    ``v = β2 v + (1-β2) Δ²``.

    Args:
        learning_rate: server learning rate η (> 0, default 0.01); tune it per task.
        beta_1: first-moment decay β1 in [0, 1).
        beta_2: second-moment decay β2 in [0, 1).
        tau: adaptivity τ (> 0), also the square root of the initial second moment.
    """

    def _second_moment(self, v: FloatVector, d2: FloatVector) -> FloatVector:
        return self.beta_2 * v + (1.0 - self.beta_2) * d2
