"""Strategies: selection, client configuration and aggregation, with explicit state.

An :class:`Algorithm` is built from parts: client sampling and configuration, update
transforms (``ControlVariates`` for SCAFFOLD, ``DifferentialPrivacy``), an aggregator
(``WeightedMean``; robust rules in ``fedhive.strategy.robust``), a server optimizer
(``ServerSGD``, ``ServerAdam``, ``ServerYogi``, ``ServerAdagrad``) and a schedule
(``Rounds``, or ``Buffered`` for FedBuff), each with typed, versioned state. One factory
per config name (``fedavg``, ``fedprox``, ``fedadam``, ``fedyogi``, ``fedadagrad``,
``scaffold``, ``fedbuff``) builds what ``[strategy] name = ...`` builds, with the same
defaults.
"""

from fedhive.strategy.accounting import PrivacyReport
from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.algorithms import (
    fedadagrad,
    fedadam,
    fedavg,
    fedbuff,
    fedprox,
    fedyogi,
    scaffold,
)
from fedhive.strategy.base import Instruction, Strategy
from fedhive.strategy.compose import (
    Aggregate,
    Aggregator,
    Fold,
    ServerOptimizer,
    ServerSGD,
    WeightedMean,
)
from fedhive.strategy.fedbuff import Buffered, BufferState, Rounds
from fedhive.strategy.optimizers import Moments, ServerAdagrad, ServerAdam, ServerYogi
from fedhive.strategy.privacy_section import PrivacySection
from fedhive.strategy.private import DifferentialPrivacy, DpMode, PrivacyState
from fedhive.strategy.registry import (
    AggregatorName,
    StrategyName,
    build_strategy,
    dispatch_loop,
)
from fedhive.strategy.sampling import ClientSampler, UniformSampler
from fedhive.strategy.scaffold import Control, ControlVariates
from fedhive.strategy.state import (
    ComponentState,
    Stateless,
    StrategyState,
    state_from_bytes,
    state_to_bytes,
)
from fedhive.strategy.transform import UpdateTransform

__all__ = [
    "Aggregate",
    "Aggregator",
    "AggregatorName",
    "Algorithm",
    "BufferState",
    "Buffered",
    "ClientSampler",
    "ComponentState",
    "Control",
    "ControlVariates",
    "DifferentialPrivacy",
    "DpMode",
    "ExactWeightedSum",
    "Fold",
    "Instruction",
    "Moments",
    "PrivacyReport",
    "PrivacySection",
    "PrivacyState",
    "Rounds",
    "ServerAdagrad",
    "ServerAdam",
    "ServerOptimizer",
    "ServerSGD",
    "ServerYogi",
    "Stateless",
    "Strategy",
    "StrategyName",
    "StrategyState",
    "UniformSampler",
    "UpdateTransform",
    "WeightedMean",
    "WeightedMetrics",
    "build_strategy",
    "dispatch_loop",
    "fedadagrad",
    "fedadam",
    "fedavg",
    "fedbuff",
    "fedprox",
    "fedyogi",
    "scaffold",
    "state_from_bytes",
    "state_to_bytes",
]
