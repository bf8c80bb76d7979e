"""Clients: the protocol, the pipeline that runs one, and adapters for ML libraries.

The adapters import their library lazily: ``fedhive.client.torch.TorchClient``,
``fedhive.client.sklearn.SklearnClient``, ``fedhive.client.numpy.NumpyClient``.
"""

from fedhive.client.app import ClientApp
from fedhive.client.base import Client, ClientFn, Context, TaskOrigin
from fedhive.client.pipeline import run_evaluate, run_fit

__all__ = [
    "Client",
    "ClientApp",
    "ClientFn",
    "Context",
    "TaskOrigin",
    "run_evaluate",
    "run_fit",
]
