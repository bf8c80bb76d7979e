"""Strategies: selection, client configuration and aggregation, with explicit state."""

from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics
from fedhive.strategy.base import Instruction, Strategy, StrategyState
from fedhive.strategy.fedavg import FedAvg
from fedhive.strategy.registry import StrategyName, build_strategy

__all__ = [
    "ExactWeightedSum",
    "FedAvg",
    "Instruction",
    "Strategy",
    "StrategyName",
    "StrategyState",
    "WeightedMetrics",
    "build_strategy",
]
