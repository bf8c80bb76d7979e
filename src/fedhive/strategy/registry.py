"""Strategies by name, as a config selects them, with their aggregator and optimizer.

```toml
[strategy]
name = "fedadam"            # fedavg | fedprox | scaffold | fedbuff | fedadam | fedyogi | fedadagrad
server_learning_rate = 0.01 # the server optimizer's learning rate (eta)
beta_1 = 0.9                # adaptive optimizers only
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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from fedhive.core._compat import StrEnum
from fedhive.core.config import check_int, check_real, from_table
from fedhive.core.extensions import Proximal
from fedhive.core.messages import ClientConfig
from fedhive.errors import ConfigError
from fedhive.strategy.base import Strategy
from fedhive.strategy.compose import Aggregator, ServerOptimizer, WeightedMean
from fedhive.strategy.fedavg import FedAvg
from fedhive.strategy.fedbuff import FedBuff
from fedhive.strategy.optimizers import ServerAdagrad, ServerAdam, ServerYogi
from fedhive.strategy.robust import Bulyan, CoordinateMedian, Krum, NormBound, TrimmedMean
from fedhive.strategy.scaffold import Scaffold


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
class _AdaptiveTable:
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3


@dataclass(frozen=True, kw_only=True)
class _ProxTable:
    proximal_mu: float = 0.01

    def __post_init__(self) -> None:
        check_real("proximal_mu", self.proximal_mu, low=0)


_FEDBUFF_KEYS = ("buffer_size", "concurrency", "staleness_exponent", "max_staleness")
_BUILT = ("aggregator", "server_optimizer", "client_config", "per_client", "base")
"""Fields built from other keys or sections, never set in [strategy] itself."""
_ADAPTIVE_RATE = 0.01
"""The adaptive optimizers' default server learning rate (FedAvg's is 1.0)."""

_ADAPTIVE = {
    StrategyName.FEDADAM: ServerAdam,
    StrategyName.FEDYOGI: ServerYogi,
    StrategyName.FEDADAGRAD: ServerAdagrad,
}


def _split(table: Mapping[str, Any], cls: type[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in dataclasses.fields(cls)}
    return (
        {k: v for k, v in table.items() if k in names},
        {k: v for k, v in table.items() if k not in names},
    )


def _wrap_config_error(make: Any, path: str) -> Any:
    try:
        return make()
    except ConfigError as exc:
        raise ConfigError(f"{path}.{exc.message}") from None


def build_strategy(
    name: StrategyName,
    table: Mapping[str, Any],
    client: ClientConfig,
    *,
    path: str,
    per_client: Mapping[str, ClientConfig] | None = None,
) -> Strategy | FedBuff:
    """Build strategy ``name`` from its config table and the clients' configurations
    (FedBuff, asynchronous, is driven by its own loop rather than the round loop)."""
    for key, section in (("client_config", "[client]"), ("per_client", "[clients.ID]")):
        if key in table:
            raise ConfigError(f"{path}.{key}: set the clients' training in {section}")
    for key in ("server_optimizer",):
        if key in table:
            raise ConfigError(f'{path}.{key}: choose it with name = "fedadam" (or yogi/adagrad)')
    aggregation, rest = _split(table, _AggregatorTable)
    rule = from_table(_AggregatorTable, aggregation, path)
    aggregator = _wrap_config_error(rule.build, path)
    adaptive: dict[str, Any] = {}
    if name in _ADAPTIVE:
        adaptive, rest = _split(rest, _AdaptiveTable)
        if name == StrategyName.FEDADAGRAD and "beta_2" in adaptive:
            raise ConfigError(f"{path}.beta_2: FedAdagrad has no second-moment decay")
    if name == StrategyName.FEDPROX:
        prox, rest = _split(rest, _ProxTable)
        term = Proximal(mu=from_table(_ProxTable, prox, path).proximal_mu)
        client = client.with_extensions(term)
        per_client = {cid: c.with_extensions(term) for cid, c in (per_client or {}).items()}
    buffered = {k: v for k, v in rest.items() if k in _FEDBUFF_KEYS}
    if name == StrategyName.FEDBUFF:  # the rest configures its base FedAvg
        rest = {k: v for k, v in rest.items() if k not in _FEDBUFF_KEYS}
    if name in _ADAPTIVE:
        rest = {"server_learning_rate": _ADAPTIVE_RATE, **rest}
    strategy = from_table(FedAvg, rest, path)
    optimizer: ServerOptimizer | None = None
    if name in _ADAPTIVE:
        cls = _ADAPTIVE[name]
        accepted = {f.name for f in dataclasses.fields(cls)}
        settings = dataclasses.asdict(from_table(_AdaptiveTable, adaptive, path))
        rate = strategy.server_learning_rate
        optimizer = _wrap_config_error(
            lambda: cls(learning_rate=rate, **{k: v for k, v in settings.items() if k in accepted}),
            path,
        )
    built = dataclasses.replace(
        strategy,
        aggregator=aggregator,
        server_optimizer=optimizer,
        client_config=client,
        per_client=dict(per_client or {}),
    )
    if name == StrategyName.FEDBUFF:
        fedbuff = from_table(FedBuff, buffered, path)
        wrapped: FedBuff = _wrap_config_error(lambda: replace(fedbuff, base=built), path)
        return wrapped
    return Scaffold(base=built) if name == StrategyName.SCAFFOLD else built


_T = TypeVar("_T")


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
    if name in _ADAPTIVE:
        accepted = {f.name for f in dataclasses.fields(_ADAPTIVE[name])}
        adaptive = _defaults(_AdaptiveTable).items()
        defaults.update({k: v for k, v in adaptive if k in accepted})
        defaults["server_learning_rate"] = _ADAPTIVE_RATE
    if name == StrategyName.FEDPROX:
        defaults.update(_defaults(_ProxTable))
    if name == StrategyName.FEDBUFF:
        defaults.update(_defaults(FedBuff, skip=_BUILT))
    return {"name": str(name), **defaults, **table}


def _defaults(cls: type[Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    return {f.name: f.default for f in fields if f.default not in (dataclasses.MISSING, None)}
