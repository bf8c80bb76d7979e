"""One factory per algorithm a config can name, each with the config's defaults.

``[strategy] name = "fedadam"`` and ``fedadam()`` build equal objects: the TOML path
(:func:`fedhive.strategy.build_strategy`) calls these factories, so every default lives
here (or in the component it configures) and nowhere else::

    from fedhive.strategy import fedadam, fedprox
    strategy = fedprox(mu=0.1, fraction_fit=0.5)
    adaptive = fedadam(server_learning_rate=0.1)

Each returns an :class:`~fedhive.strategy.algorithm.Algorithm` (one class, other parts);
the keyword arguments after the algorithm's own are its fields (``fraction_fit``,
``min_fit_clients``, ``aggregator``, ``transforms``, ``client_config``, ...). Parts
stack: ``scaffold(aggregator=TrimmedMean(), transforms=(DifferentialPrivacy(),))`` is
SCAFFOLD with central DP and a robust rule.
"""

from __future__ import annotations

from typing import Any

from fedhive.core.extensions import Proximal
from fedhive.core.messages import ClientConfig
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.fedbuff import Buffered
from fedhive.strategy.optimizers import (
    ADAPTIVE_LEARNING_RATE,
    ServerAdagrad,
    ServerAdam,
    ServerYogi,
)
from fedhive.strategy.scaffold import ControlVariates

__all__ = ["fedadagrad", "fedadam", "fedavg", "fedbuff", "fedprox", "fedyogi", "scaffold"]

PROXIMAL_MU = 0.01
"""FedProx's default ``mu``, one of the values Li et al. (MLSys 2020) sweep; tune it."""


def fedavg(**settings: Any) -> Algorithm:
    """FedAvg (McMahan et al. 2017): the example-weighted mean of the updates.

    Args:
        **settings: :class:`Algorithm`'s fields.
    """
    return Algorithm(**settings)


def fedprox(*, mu: float = PROXIMAL_MU, **settings: Any) -> Algorithm:
    """FedProx (Li et al. 2020): FedAvg whose clients (``client_config`` and every
    ``per_client`` entry) train with the proximal term ``Proximal(mu)``.

    Args:
        mu: the proximal coefficient (>= 0); config key ``proximal_mu``.
        **settings: :class:`Algorithm`'s fields.
    """
    term = Proximal(mu=mu)
    client: ClientConfig = settings.pop("client_config", ClientConfig())
    per_client: dict[str, ClientConfig] = dict(settings.pop("per_client", {}))
    return Algorithm(
        client_config=client.with_extensions(term),
        per_client={cid: c.with_extensions(term) for cid, c in per_client.items()},
        **settings,
    )


def fedadam(
    *,
    server_learning_rate: float = ADAPTIVE_LEARNING_RATE,
    beta_1: float = ServerAdam.beta_1,
    beta_2: float = ServerAdam.beta_2,
    tau: float = ServerAdam.tau,
    **settings: Any,
) -> Algorithm:
    """FedAdam (Reddi et al. 2021): FedAvg with :class:`ServerAdam` on the server.

    Args:
        server_learning_rate: the optimizer's learning rate η (> 0).
        beta_1: first-moment decay in [0, 1).
        beta_2: second-moment decay in [0, 1).
        tau: adaptivity (> 0).
        **settings: :class:`Algorithm`'s other fields.
    """
    optimizer = ServerAdam(
        learning_rate=server_learning_rate, beta_1=beta_1, beta_2=beta_2, tau=tau
    )
    return Algorithm(
        server_learning_rate=server_learning_rate, server_optimizer=optimizer, **settings
    )


def fedyogi(
    *,
    server_learning_rate: float = ADAPTIVE_LEARNING_RATE,
    beta_1: float = ServerYogi.beta_1,
    beta_2: float = ServerYogi.beta_2,
    tau: float = ServerYogi.tau,
    **settings: Any,
) -> Algorithm:
    """FedYogi (Reddi et al. 2021): FedAvg with :class:`ServerYogi` on the server.

    Args:
        server_learning_rate: the optimizer's learning rate η (> 0).
        beta_1: first-moment decay in [0, 1).
        beta_2: second-moment rate in [0, 1).
        tau: adaptivity (> 0).
        **settings: :class:`Algorithm`'s other fields.
    """
    optimizer = ServerYogi(
        learning_rate=server_learning_rate, beta_1=beta_1, beta_2=beta_2, tau=tau
    )
    return Algorithm(
        server_learning_rate=server_learning_rate, server_optimizer=optimizer, **settings
    )


def fedadagrad(
    *,
    server_learning_rate: float = ADAPTIVE_LEARNING_RATE,
    beta_1: float = ServerAdam.beta_1,
    tau: float = ServerAdagrad.tau,
    **settings: Any,
) -> Algorithm:
    """FedAdagrad (Reddi et al. 2021): FedAvg with :class:`ServerAdagrad` on the server.

    Args:
        server_learning_rate: the optimizer's learning rate η (> 0).
        beta_1: first-moment decay in [0, 1); by default FedAdam's and FedYogi's (the
            paper's experiments use 0.9 for all three); 0 is plain Adagrad, the
            :class:`ServerAdagrad` primitive's own default.
        tau: adaptivity (> 0).
        **settings: :class:`Algorithm`'s other fields.
    """
    optimizer = ServerAdagrad(learning_rate=server_learning_rate, beta_1=beta_1, tau=tau)
    return Algorithm(
        server_learning_rate=server_learning_rate, server_optimizer=optimizer, **settings
    )


def scaffold(**settings: Any) -> Algorithm:
    """SCAFFOLD (Karimireddy et al. 2020): FedAvg with :class:`ControlVariates` as its
    first transform (before any in ``transforms``, e.g. DP).

    Args:
        **settings: :class:`Algorithm`'s fields.
    """
    transforms = (ControlVariates(), *settings.pop("transforms", ()))
    return Algorithm(transforms=transforms, **settings)


def fedbuff(
    *,
    buffer_size: int = Buffered.buffer_size,
    concurrency: int = Buffered.concurrency,
    staleness_exponent: float = Buffered.staleness_exponent,
    max_staleness: int = Buffered.max_staleness,
    **settings: Any,
) -> Algorithm:
    """FedBuff (Nguyen et al. 2022): FedAvg's parts on a :class:`Buffered` schedule
    (asynchronous buffered aggregation). Its sampling fraction and ``min_fit_clients``
    are not used (the buffer size decides when to commit), nor is federated evaluation
    yet (central evaluation runs after every version).

    Args:
        buffer_size: K, buffered updates per new version (>= 1).
        concurrency: C, clients training at once (>= 1).
        staleness_exponent: a in (1 + staleness)^-a (>= 0).
        max_staleness: 0 for no limit, else updates staler than this are discarded.
        **settings: :class:`Algorithm`'s other fields.
    """
    schedule = Buffered(
        buffer_size=buffer_size,
        concurrency=concurrency,
        staleness_exponent=staleness_exponent,
        max_staleness=max_staleness,
    )
    return Algorithm(schedule=schedule, **settings)
