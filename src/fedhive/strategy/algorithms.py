"""One factory per algorithm a config can name, each with the config's defaults.

``[strategy] name = "fedadam"`` and ``fedadam()`` build equal objects: the TOML path
(:func:`fedhive.strategy.build_strategy`) calls these factories, so every default lives
here (or in the component it configures) and nowhere else::

    from fedhive.strategy import fedadam, fedprox
    strategy = fedprox(mu=0.1, fraction_fit=0.5)
    adaptive = fedadam(server_learning_rate=0.1)

The keyword arguments after the algorithm's own are :class:`FedAvg`'s (``fraction_fit``,
``min_fit_clients``, ``aggregator``, ``client_config``, ``per_client``, ...).
"""

from __future__ import annotations

from typing import Any

from fedhive.core.extensions import Proximal
from fedhive.core.messages import ClientConfig
from fedhive.strategy.fedavg import FedAvg
from fedhive.strategy.fedbuff import FedBuff
from fedhive.strategy.optimizers import (
    ADAPTIVE_LEARNING_RATE,
    ServerAdagrad,
    ServerAdam,
    ServerYogi,
)
from fedhive.strategy.scaffold import Scaffold

__all__ = ["fedadagrad", "fedadam", "fedavg", "fedbuff", "fedprox", "fedyogi", "scaffold"]

PROXIMAL_MU = 0.01
"""FedProx's default ``mu``, one of the values Li et al. (MLSys 2020) sweep; tune it."""


def fedavg(**settings: Any) -> FedAvg:
    """FedAvg (McMahan et al. 2017): the example-weighted mean of the updates.

    Args:
        **settings: :class:`FedAvg`'s fields.
    """
    return FedAvg(**settings)


def fedprox(*, mu: float = PROXIMAL_MU, **settings: Any) -> FedAvg:
    """FedProx (Li et al. 2020): FedAvg whose clients (``client_config`` and every
    ``per_client`` entry) train with the proximal term ``Proximal(mu)``.

    Args:
        mu: the proximal coefficient (>= 0); config key ``proximal_mu``.
        **settings: :class:`FedAvg`'s fields.
    """
    term = Proximal(mu=mu)
    client: ClientConfig = settings.pop("client_config", ClientConfig())
    per_client: dict[str, ClientConfig] = dict(settings.pop("per_client", {}))
    return FedAvg(
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
) -> FedAvg:
    """FedAdam (Reddi et al. 2021): FedAvg with :class:`ServerAdam` on the server.

    Args:
        server_learning_rate: the optimizer's learning rate η (> 0).
        beta_1: first-moment decay in [0, 1).
        beta_2: second-moment decay in [0, 1).
        tau: adaptivity (> 0).
        **settings: :class:`FedAvg`'s other fields.
    """
    optimizer = ServerAdam(
        learning_rate=server_learning_rate, beta_1=beta_1, beta_2=beta_2, tau=tau
    )
    return FedAvg(server_learning_rate=server_learning_rate, server_optimizer=optimizer, **settings)


def fedyogi(
    *,
    server_learning_rate: float = ADAPTIVE_LEARNING_RATE,
    beta_1: float = ServerYogi.beta_1,
    beta_2: float = ServerYogi.beta_2,
    tau: float = ServerYogi.tau,
    **settings: Any,
) -> FedAvg:
    """FedYogi (Reddi et al. 2021): FedAvg with :class:`ServerYogi` on the server.

    Args:
        server_learning_rate: the optimizer's learning rate η (> 0).
        beta_1: first-moment decay in [0, 1).
        beta_2: second-moment rate in [0, 1).
        tau: adaptivity (> 0).
        **settings: :class:`FedAvg`'s other fields.
    """
    optimizer = ServerYogi(
        learning_rate=server_learning_rate, beta_1=beta_1, beta_2=beta_2, tau=tau
    )
    return FedAvg(server_learning_rate=server_learning_rate, server_optimizer=optimizer, **settings)


def fedadagrad(
    *,
    server_learning_rate: float = ADAPTIVE_LEARNING_RATE,
    beta_1: float = ServerAdam.beta_1,
    tau: float = ServerAdagrad.tau,
    **settings: Any,
) -> FedAvg:
    """FedAdagrad (Reddi et al. 2021): FedAvg with :class:`ServerAdagrad` on the server.

    Args:
        server_learning_rate: the optimizer's learning rate η (> 0).
        beta_1: first-moment decay in [0, 1); by default FedAdam's and FedYogi's (the
            paper's experiments use 0.9 for all three); 0 is plain Adagrad, the
            :class:`ServerAdagrad` primitive's own default.
        tau: adaptivity (> 0).
        **settings: :class:`FedAvg`'s other fields.
    """
    optimizer = ServerAdagrad(learning_rate=server_learning_rate, beta_1=beta_1, tau=tau)
    return FedAvg(server_learning_rate=server_learning_rate, server_optimizer=optimizer, **settings)


def scaffold(**settings: Any) -> Scaffold:
    """SCAFFOLD (Karimireddy et al. 2020): control variates around a FedAvg.

    Args:
        **settings: the base :class:`FedAvg`'s fields.
    """
    return Scaffold(base=FedAvg(**settings))


def fedbuff(
    *,
    buffer_size: int = FedBuff.buffer_size,
    concurrency: int = FedBuff.concurrency,
    staleness_exponent: float = FedBuff.staleness_exponent,
    max_staleness: int = FedBuff.max_staleness,
    **settings: Any,
) -> FedBuff:
    """FedBuff (Nguyen et al. 2022): asynchronous buffered aggregation around a FedAvg.

    Args:
        buffer_size: K, buffered updates per new version (>= 1).
        concurrency: C, clients training at once (>= 1).
        staleness_exponent: a in (1 + staleness)^-a (>= 0).
        max_staleness: 0 for no limit, else updates staler than this are discarded.
        **settings: the base :class:`FedAvg`'s fields.
    """
    return FedBuff(
        base=FedAvg(**settings),
        buffer_size=buffer_size,
        concurrency=concurrency,
        staleness_exponent=staleness_exponent,
        max_staleness=max_staleness,
    )
