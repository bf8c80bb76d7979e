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

State keys: ``"opt.m"`` and ``"opt.v"``, float64 vectors of the flat model size, and
``"opt.step"``, the int number of steps taken; the state survives ``record_to_bytes``.
``step`` is pure: it never modifies the arrays it is given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedhive.core.config import check_real
from fedhive.core.weights import FloatVector, Layout
from fedhive.errors import ShapeMismatchError, ValidationError
from fedhive.strategy.base import StrategyState

__all__ = [
    "ADAPTIVE_LEARNING_RATE",
    "M_KEY",
    "STEP_KEY",
    "V_KEY",
    "ServerAdagrad",
    "ServerAdam",
    "ServerYogi",
]


M_KEY = "opt.m"
V_KEY = "opt.v"
STEP_KEY = "opt.step"

# Defaults: β1 = 0.9 and β2 = 0.99 are the values the paper fixes for FedAdam and FedYogi
# in its experiments; τ = 1e-3 is the adaptivity it recommends from its sweep over τ;
# β1 = 0 makes FedAdagrad plain Adagrad, the form its convergence theorems assume. The
# server learning rate's default, 0.01, is only a starting point: the paper tunes it per task.
ADAPTIVE_LEARNING_RATE = 0.01
_BETA_1 = 0.9
_BETA_2 = 0.99
_TAU = 1e-3


def _check(learning_rate: float, tau: float, betas: dict[str, float]) -> None:
    check_real("learning_rate", learning_rate, low=0, low_open=True)
    check_real("tau", tau, low=0, low_open=True)
    for name, beta in betas.items():
        check_real(name, beta, low=0, high=1, high_open=True)


def _init(layout: Layout, tau: float) -> StrategyState:
    size = layout.total_size
    return {M_KEY: np.zeros(size), V_KEY: np.full(size, tau * tau, dtype=np.float64), STEP_KEY: 0}


def _moment(state: StrategyState, key: str, shape: tuple[int, ...]) -> FloatVector:
    value = state.get(key)
    if not isinstance(value, np.ndarray) or value.shape != shape:
        found = f"shape {value.shape}" if isinstance(value, np.ndarray) else repr(value)
        raise ShapeMismatchError(
            f"optimizer state {key!r}: expected an array of shape {shape}, got {found}",
            stage="optimize",
        )
    return value.astype(np.float64, copy=False)


def _step(
    opt: ServerAdagrad | _Decaying,
    state: StrategyState,
    weights: FloatVector,
    update: FloatVector,
    second_moment: Callable[[FloatVector, FloatVector], FloatVector],
) -> tuple[StrategyState, FloatVector]:
    """One round of Algorithm 2; ``second_moment(v_{t-1}, Δ_t²)`` gives ``v_t``."""
    if update.shape != weights.shape:
        raise ShapeMismatchError(
            f"update has shape {update.shape}, weights {weights.shape}", stage="optimize"
        )
    m_prev = _moment(state, M_KEY, weights.shape)
    v_prev = _moment(state, V_KEY, weights.shape)
    steps = state.get(STEP_KEY, 0)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ValidationError(f"optimizer state {STEP_KEY!r} must be an int, got {steps!r}")
    m = opt.beta_1 * m_prev + (1.0 - opt.beta_1) * update
    v = second_moment(v_prev, np.square(update))
    new_weights = weights + opt.learning_rate * m / (np.sqrt(v) + opt.tau)
    return {**state, M_KEY: m, V_KEY: v, STEP_KEY: steps + 1}, new_weights


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

    learning_rate: float = ADAPTIVE_LEARNING_RATE
    tau: float = _TAU
    beta_1: float = 0.0

    def __post_init__(self) -> None:
        _check(self.learning_rate, self.tau, {"beta_1": self.beta_1})

    def init(self, layout: Layout) -> StrategyState:
        """``m = 0`` and ``v = τ²`` in every coordinate, no steps taken."""
        return _init(layout, self.tau)

    def step(
        self, state: StrategyState, weights: FloatVector, update: FloatVector
    ) -> tuple[StrategyState, FloatVector]:
        """``v += Δ²``, then step along the first moment."""
        return _step(self, state, weights, update, _adagrad_v)


@dataclass(frozen=True, kw_only=True)
class _Decaying(ABC):
    """What FedYogi and FedAdam share: their settings and their step; a subclass gives
    the second-moment rule ``v_t`` of ``v_{t-1}`` and ``Δ_t²``."""

    learning_rate: float = ADAPTIVE_LEARNING_RATE
    beta_1: float = _BETA_1
    beta_2: float = _BETA_2
    tau: float = _TAU

    def __post_init__(self) -> None:
        _check(self.learning_rate, self.tau, {"beta_1": self.beta_1, "beta_2": self.beta_2})

    def init(self, layout: Layout) -> StrategyState:
        """``m = 0`` and ``v = τ²`` in every coordinate, no steps taken."""
        return _init(layout, self.tau)

    def step(
        self, state: StrategyState, weights: FloatVector, update: FloatVector
    ) -> tuple[StrategyState, FloatVector]:
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
