"""Strategies by name, as a config selects them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fedhive.core._compat import StrEnum
from fedhive.core.config import from_table
from fedhive.core.messages import ClientConfig
from fedhive.errors import ConfigError
from fedhive.strategy.base import Strategy
from fedhive.strategy.fedavg import FedAvg


class StrategyName(StrEnum):
    """The strategies a config can name."""

    FEDAVG = "fedavg"


_CLASSES: dict[StrategyName, type[Any]] = {StrategyName.FEDAVG: FedAvg}


def build_strategy(
    name: StrategyName, table: Mapping[str, Any], client: ClientConfig, *, path: str
) -> Strategy:
    """Build strategy ``name`` from its config table and the default client config."""
    if "client_config" in table:
        raise ConfigError(f"{path}.client_config: set the client's training in [client]")
    cls = _CLASSES[name]
    strategy = from_table(cls, table, path)
    return dataclasses.replace(strategy, client_config=client)  # type: ignore[no-any-return]
