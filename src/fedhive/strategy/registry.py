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
    name: StrategyName,
    table: Mapping[str, Any],
    client: ClientConfig,
    *,
    path: str,
    per_client: Mapping[str, ClientConfig] | None = None,
) -> Strategy:
    """Build strategy ``name`` from its config table and the clients' configurations."""
    for key, section in (("client_config", "[client]"), ("per_client", "[clients.ID]")):
        if key in table:
            raise ConfigError(f"{path}.{key}: set the clients' training in {section}")
    cls = _CLASSES[name]
    strategy = from_table(cls, table, path)
    return dataclasses.replace(  # type: ignore[no-any-return]
        strategy, client_config=client, per_client=dict(per_client or {})
    )
