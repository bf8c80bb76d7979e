"""Strategies by name, as a config selects them, with their aggregator and optimizer.

```toml
[strategy]
name = "fedadam"            # fedavg | fedprox | scaffold | fedbuff | fedadam | fedyogi | fedadagrad
server_learning_rate = 0.01 # the server optimizer's learning rate (eta)
beta_1 = 0.9                # adaptive optimizers only (fedadagrad: default 0.0)
beta_2 = 0.99
tau = 0.001
proximal_mu = 0.01          # fedprox only: the proximal term's coefficient
aggregator = "median"       # mean | median | trimmed_mean | krum | bulyan
trim_fraction = 0.1         # trimmed_mean
byzantine = 1               # krum, bulyan: the number of attackers tolerated
multi = 1                   # krum: average the m best (Multi-Krum)
max_update_norm = 0.0       # > 0: clip every update to this L2 norm first
buffer_size = 10            # fedbuff only: updates per new version (K)
concurrency = 20            # fedbuff only: clients training at once (C)
staleness_exponent = 0.5    # fedbuff only: stale updates weigh (1 + staleness)^-a
max_staleness = 0           # fedbuff only: > 0: discard updates staler than this
```

Each name is built by its factory in :mod:`fedhive.strategy.algorithms` (``fedadam(...)``
for ``"fedadam"``), which holds the defaults.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from fedhive.core._compat import StrEnum
from fedhive.core.config import check_int, check_real, from_table
from fedhive.core.messages import ClientConfig
from fedhive.errors import ConfigError
from fedhive.strategy.algorithms import (
    PROXIMAL_MU,
    fedadagrad,
    fedadam,
    fedavg,
    fedbuff,
    fedprox,
    fedyogi,
    scaffold,
)
from fedhive.strategy.base import Strategy
from fedhive.strategy.compose import Aggregator, WeightedMean
from fedhive.strategy.fedavg import FedAvg
from fedhive.strategy.fedbuff import FedBuff
from fedhive.strategy.optimizers import ServerAdagrad, ServerAdam, ServerYogi
from fedhive.strategy.robust import Bulyan, CoordinateMedian, Krum, NormBound, TrimmedMean

_T = TypeVar("_T")


class StrategyName(StrEnum):
    """The strategies a config can name."""

    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    SCAFFOLD = "scaffold"
    FEDBUFF = "fedbuff"
    FEDADAM = "fedadam"
    FEDYOGI = "fedyogi"
    FEDADAGRAD = "fedadagrad"


class AggregatorName(StrEnum):
    """The aggregation rules a config can name."""

    MEAN = "mean"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"
    KRUM = "krum"
    BULYAN = "bulyan"


@dataclass(frozen=True, kw_only=True)
class _AggregatorTable:
    aggregator: AggregatorName = AggregatorName.MEAN
    trim_fraction: float = 0.1
    byzantine: int = 0
    multi: int = 1
    max_update_norm: float = 0.0

    def __post_init__(self) -> None:
        check_real("max_update_norm", self.max_update_norm, low=0)
        check_int("byzantine", self.byzantine, minimum=0)
        check_int("multi", self.multi, minimum=1)

    def build(self) -> Aggregator:
        rules: dict[AggregatorName, Any] = {
            AggregatorName.MEAN: WeightedMean,
            AggregatorName.MEDIAN: CoordinateMedian,
            AggregatorName.TRIMMED_MEAN: lambda: TrimmedMean(trim_fraction=self.trim_fraction),
            AggregatorName.KRUM: lambda: Krum(byzantine=self.byzantine, multi=self.multi),
            AggregatorName.BULYAN: lambda: Bulyan(byzantine=self.byzantine),
        }
        rule: Aggregator = rules[self.aggregator]()
        if self.max_update_norm > 0:
            return NormBound(inner=rule, max_norm=self.max_update_norm)
        return rule


@dataclass(frozen=True, kw_only=True)
class _ProxTable:
    proximal_mu: float = PROXIMAL_MU


_FACTORIES: dict[StrategyName, Callable[..., Strategy | FedBuff]] = {
    StrategyName.FEDAVG: fedavg,
    StrategyName.FEDPROX: fedprox,
    StrategyName.SCAFFOLD: scaffold,
    StrategyName.FEDBUFF: fedbuff,
    StrategyName.FEDADAM: fedadam,
    StrategyName.FEDYOGI: fedyogi,
    StrategyName.FEDADAGRAD: fedadagrad,
}
_ADAPTIVE: dict[StrategyName, type[Any]] = {
    StrategyName.FEDADAM: ServerAdam,
    StrategyName.FEDYOGI: ServerYogi,
    StrategyName.FEDADAGRAD: ServerAdagrad,
}
_FEDBUFF_KEYS = ("buffer_size", "concurrency", "staleness_exponent", "max_staleness")
_RENAMED = {"mu": "proximal_mu"}
"""Factory arguments whose config key differs."""
_BUILT = ("aggregator", "server_optimizer", "client_config", "per_client", "base")
"""Fields built from other keys or sections, never set in [strategy] itself."""


def _split(
    table: Mapping[str, Any], names: Collection[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {k: v for k, v in table.items() if k in names},
        {k: v for k, v in table.items() if k not in names},
    )


def _wrap_config_error(make: Callable[[], _T], path: str) -> _T:
    try:
        return make()
    except ConfigError as exc:
        raise ConfigError(f"{path}.{exc.message}") from None


def _own_settings(
    name: StrategyName, table: Mapping[str, Any], path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Strategy ``name``'s own keys of ``table``, checked, as its factory's arguments;
    and the rest of ``table`` (the base FedAvg's keys)."""
    if name in _ADAPTIVE:
        if name == StrategyName.FEDADAGRAD and "beta_2" in table:
            raise ConfigError(f"{path}.beta_2: FedAdagrad has no second-moment decay")
        cls = _ADAPTIVE[name]
        own, rest = _split(table, {f.name for f in fields(cls)} - {"learning_rate"})
        checked = from_table(cls, own, path)
        return {k: getattr(checked, k) for k in own}, rest
    if name == StrategyName.FEDPROX:
        own, rest = _split(table, ("proximal_mu",))
        prox = from_table(_ProxTable, own, path)
        check_real(f"{path}.proximal_mu", prox.proximal_mu, low=0)
        return ({"mu": prox.proximal_mu} if own else {}), rest
    if name == StrategyName.FEDBUFF:
        own, rest = _split(table, _FEDBUFF_KEYS)
        buffered = from_table(FedBuff, own, path)
        return {k: getattr(buffered, k) for k in own}, rest
    return {}, dict(table)


def build_strategy(
    name: StrategyName,
    table: Mapping[str, Any],
    client: ClientConfig | None = None,
    *,
    path: str = "strategy",
    per_client: Mapping[str, ClientConfig] | None = None,
) -> Strategy | FedBuff:
    """Build strategy ``name`` from its config table and the clients' configurations
    with the same factory Python code calls (``fedadam(...)`` for ``"fedadam"``), so a
    table with no keys gives the factory's defaults. (FedBuff, asynchronous, is driven by
    its own loop rather than the round loop.)"""
    for key, section in (("client_config", "[client]"), ("per_client", "[clients.ID]")):
        if key in table:
            raise ConfigError(f"{path}.{key}: set the clients' training in {section}")
    for key in ("server_optimizer",):
        if key in table:
            raise ConfigError(f'{path}.{key}: choose it with name = "fedadam" (or yogi/adagrad)')
    aggregation, rest = _split(table, {f.name for f in fields(_AggregatorTable)})
    rule = from_table(_AggregatorTable, aggregation, path)
    aggregator = _wrap_config_error(rule.build, path)
    own, rest = _own_settings(name, rest, path)
    base = from_table(FedAvg, rest, path)
    settings = {k: getattr(base, k) for k in rest}
    factory = _FACTORIES[name]
    return _wrap_config_error(
        lambda: factory(
            **own,
            **settings,
            aggregator=aggregator,
            client_config=client or ClientConfig(),
            per_client=dict(per_client or {}),
        ),
        path,
    )


def dispatch_loop(
    strategy: Strategy | FedBuff,
    *,
    rounds: Callable[[Strategy], _T],
    buffered: Callable[[FedBuff], _T],
) -> _T:
    """Hand ``strategy`` to the loop that runs it: FedBuff (asynchronous) to
    ``buffered``, every other strategy to ``rounds`` (the synchronous round loop).

    The one place that decides it, for simulation, deployment and the run rules alike.
    """
    if isinstance(strategy, FedBuff):
        return buffered(strategy)
    return rounds(strategy)


def resolved_table(name: StrategyName, table: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[strategy]`` table ``table`` (one :func:`build_strategy` accepted) with
    every key strategy ``name`` reads, defaults filled in: it builds the same strategy."""
    defaults = {**_defaults(FedAvg, skip=_BUILT), **_defaults(_AggregatorTable)}
    for arg in inspect.signature(_FACTORIES[name]).parameters.values():
        if arg.kind is inspect.Parameter.KEYWORD_ONLY:
            defaults[_RENAMED.get(arg.name, arg.name)] = arg.default
    return {"name": str(name), **defaults, **table}


def _defaults(cls: type[Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    kept = [f for f in fields(cls) if f.name not in skip]
    return {f.name: f.default for f in kept if f.default not in (dataclasses.MISSING, None)}
