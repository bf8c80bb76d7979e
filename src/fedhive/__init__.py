"""fedhive: federated learning where raw data never leaves the device.

The public API is what ``__all__`` lists here and in each subpackage; the rest is
private and may change.
"""

from fedhive.client.app import ClientApp
from fedhive.client.base import Client, Context
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult, PrivacyBudget
from fedhive.core.weights import Weights
from fedhive.errors import FedhiveError
from fedhive.server.app import ServerApp
from fedhive.server.run import RunResult
from fedhive.simulation.app import AppContext, SimulationApp
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "AppContext",
    "Client",
    "ClientApp",
    "ClientConfig",
    "Context",
    "EvaluateResult",
    "FedhiveError",
    "FitResult",
    "PrivacyBudget",
    "RunResult",
    "ServerApp",
    "SimulationApp",
    "Weights",
    "__version__",
    "run_simulation",
]
