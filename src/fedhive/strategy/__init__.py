"""Strategies: selection, client configuration and aggregation, with explicit state.

A strategy composes an aggregator (``WeightedMean``; robust rules in
``fedhive.strategy.robust``) and a server optimizer (``ServerSGD``, ``ServerAdam``,
``ServerYogi``, ``ServerAdagrad``); ``Scaffold`` wraps a FedAvg with control variates,
``FedBuff`` with asynchronous buffered aggregation. One factory per config name
(``fedavg``, ``fedprox``, ``fedadam``, ``fedyogi``, ``fedadagrad``, ``scaffold``,
``fedbuff``) builds what ``[strategy] name = ...`` builds, with the same defaults.
"""

from fedhive.strategy.accounting import PrivacyReport
from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics
from fedhive.strategy.algorithms import (
    fedadagrad,
    fedadam,
    fedavg,
    fedbuff,
    fedprox,
    fedyogi,
    scaffold,
)
from fedhive.strategy.base import Instruction, Strategy, StrategyState
from fedhive.strategy.compose import (
    Aggregate,
    Aggregator,
    ServerOptimizer,
    ServerSGD,
    WeightedMean,
)
from fedhive.strategy.fedavg import FedAvg
from fedhive.strategy.fedbuff import FedBuff
from fedhive.strategy.optimizers import ServerAdagrad, ServerAdam, ServerYogi
from fedhive.strategy.privacy_section import PrivacySection
from fedhive.strategy.private import DpFedAvg, DpMode
from fedhive.strategy.registry import (
    AggregatorName,
    StrategyName,
    build_strategy,
    dispatch_loop,
)
from fedhive.strategy.scaffold import Scaffold

__all__ = [
    "Aggregate",
    "Aggregator",
    "AggregatorName",
    "DpFedAvg",
    "DpMode",
    "ExactWeightedSum",
    "FedAvg",
    "FedBuff",
    "Instruction",
    "PrivacyReport",
    "PrivacySection",
    "Scaffold",
    "ServerAdagrad",
    "ServerAdam",
    "ServerOptimizer",
    "ServerSGD",
    "ServerYogi",
    "Strategy",
    "StrategyName",
    "StrategyState",
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
]
