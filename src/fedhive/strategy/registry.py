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

The section is declared once, here, with msgspec: one frozen Struct per algorithm,
tagged by ``name``, with each key's type and constraints and (taken from the factories
and components, where they live) its default. A key of another algorithm is refused
with the algorithms that accept it
(``strategy.beta_1: unknown key for fedavg; accepted by fedadam, fedyogi, fedadagrad``).
:func:`parse_strategy` reads a table into its section; ``section.build(...)`` calls the
algorithm's factory in :mod:`fedhive.strategy.algorithms` (``fedadam(...)`` for
``"fedadam"``), so Python and TOML build equal strategies; ``msgspec.to_builtins`` of a
section is the resolved table (every default filled in), which reads back to an equal one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, TypeAlias, TypeVar

import msgspec

from fedhive.core._compat import StrEnum
from fedhive.core.decode import (
    AtLeastOne,
    AtLeastZero,
    FiniteNonNegative,
    FinitePositive,
    Fraction,
    decode,
)
from fedhive.core.messages import ClientConfig
from fedhive.errors import ConfigError
from fedhive.strategy.algorithm import Algorithm
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
from fedhive.strategy.fedbuff import Buffered
from fedhive.strategy.optimizers import ADAPTIVE_LEARNING_RATE, ServerAdam
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


Positive = FinitePositive
NonNegative = FiniteNonNegative
Decay = Annotated[float, msgspec.Meta(ge=0, lt=1)]

_AGGREGATION = ("aggregator", "trim_fraction", "byzantine", "multi", "max_update_norm")
_HINTS = {
    "client_config": "set the clients' training in [client]",
    "per_client": "set the clients' training in [clients.ID]",
    "server_optimizer": 'choose it with name = "fedadam" (or fedyogi, fedadagrad)',
    "transforms": 'choose them with name = "scaffold" and a [privacy] section',
    "schedule": 'choose it with name = "fedbuff"',
    "sampler": "a custom client sampler is set from Python (Algorithm(sampler=...))",
}
"""Algorithm fields that a config sets elsewhere, and where."""


class _Section(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="name"
):
    """The keys every algorithm accepts: the base FedAvg's, and its aggregation rule."""

    fraction_fit: Annotated[float, msgspec.Meta(gt=0, le=1)] = Algorithm.fraction_fit
    fraction_evaluate: Fraction = Algorithm.fraction_evaluate
    min_fit_clients: AtLeastOne = Algorithm.min_fit_clients
    min_evaluate_clients: AtLeastOne = Algorithm.min_evaluate_clients
    min_available_clients: AtLeastOne = Algorithm.min_available_clients
    server_learning_rate: Positive = Algorithm.server_learning_rate
    over_selection: Fraction = Algorithm.over_selection
    aggregator: AggregatorName = AggregatorName.MEAN
    trim_fraction: Annotated[float, msgspec.Meta(ge=0, lt=0.5)] = 0.1
    byzantine: AtLeastZero = 0
    multi: AtLeastOne = 1
    max_update_norm: NonNegative = 0.0
    """> 0: clip every update to this L2 norm before the rule."""

    factory: ClassVar[Any] = staticmethod(fedavg)

    @property
    def strategy_name(self) -> StrategyName:
        """The algorithm, as ``name`` selects it."""
        return StrategyName(str(self.__struct_config__.tag))

    def _own(self) -> dict[str, Any]:
        """The factory's arguments from the algorithm's own keys."""
        return {}

    def build(
        self,
        client: ClientConfig | None = None,
        *,
        per_client: Mapping[str, ClientConfig] | None = None,
        path: str = "strategy",
    ) -> Algorithm:
        """The strategy this section describes, for clients trained as ``client`` (and
        ``per_client``): what the algorithm's factory builds from the same settings."""
        base = {k: getattr(self, k) for k in _BASE}
        try:
            built: Algorithm = self.factory(
                **base,
                **self._own(),
                aggregator=self._aggregator(),
                client_config=client or ClientConfig(),
                per_client=dict(per_client or {}),
            )
        except ConfigError as exc:
            raise ConfigError(f"{path}.{exc.message}") from None
        return built

    def _aggregator(self) -> Aggregator:
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


_BASE = tuple(f for f in _Section.__struct_fields__ if f not in _AGGREGATION)


class FedAvgSection(_Section, frozen=True, tag="fedavg"):
    """``name = "fedavg"``: :func:`fedhive.strategy.fedavg`."""


class ScaffoldSection(_Section, frozen=True, tag="scaffold"):
    """``name = "scaffold"``: :func:`fedhive.strategy.scaffold`."""

    factory: ClassVar[Any] = staticmethod(scaffold)


class FedProxSection(_Section, frozen=True, tag="fedprox"):
    """``name = "fedprox"``: :func:`fedhive.strategy.fedprox`."""

    proximal_mu: NonNegative = PROXIMAL_MU
    factory: ClassVar[Any] = staticmethod(fedprox)

    def _own(self) -> dict[str, Any]:
        return {"mu": self.proximal_mu}


class _AdaptiveSection(_Section, frozen=True):
    server_learning_rate: Positive = ADAPTIVE_LEARNING_RATE
    beta_1: Decay = ServerAdam.beta_1
    tau: Positive = ServerAdam.tau

    def _own(self) -> dict[str, Any]:
        return {"beta_1": self.beta_1, "tau": self.tau}


class FedAdamSection(_AdaptiveSection, frozen=True, tag="fedadam"):
    """``name = "fedadam"``: :func:`fedhive.strategy.fedadam`."""

    beta_2: Decay = ServerAdam.beta_2
    factory: ClassVar[Any] = staticmethod(fedadam)

    def _own(self) -> dict[str, Any]:
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "tau": self.tau}


class FedYogiSection(FedAdamSection, frozen=True, tag="fedyogi"):
    """``name = "fedyogi"``: :func:`fedhive.strategy.fedyogi`."""

    factory: ClassVar[Any] = staticmethod(fedyogi)


class FedAdagradSection(_AdaptiveSection, frozen=True, tag="fedadagrad"):
    """``name = "fedadagrad"``: :func:`fedhive.strategy.fedadagrad` (no ``beta_2``)."""

    beta_1: Decay = ServerAdam.beta_1  # as fedhive.strategy.fedadagrad
    factory: ClassVar[Any] = staticmethod(fedadagrad)


class FedBuffSection(_Section, frozen=True, tag="fedbuff"):
    """``name = "fedbuff"``: :func:`fedhive.strategy.fedbuff`."""

    buffer_size: AtLeastOne = Buffered.buffer_size
    concurrency: AtLeastOne = Buffered.concurrency
    staleness_exponent: NonNegative = Buffered.staleness_exponent
    max_staleness: AtLeastZero = Buffered.max_staleness
    factory: ClassVar[Any] = staticmethod(fedbuff)

    def _own(self) -> dict[str, Any]:
        return {
            "buffer_size": self.buffer_size,
            "concurrency": self.concurrency,
            "staleness_exponent": self.staleness_exponent,
            "max_staleness": self.max_staleness,
        }


StrategySection: TypeAlias = (
    FedAvgSection
    | FedProxSection
    | ScaffoldSection
    | FedBuffSection
    | FedAdamSection
    | FedYogiSection
    | FedAdagradSection
)
"""The ``[strategy]`` section: one Struct per algorithm, chosen by ``name``."""

SECTIONS: dict[StrategyName, type[_Section]] = {
    StrategyName.FEDAVG: FedAvgSection,
    StrategyName.FEDPROX: FedProxSection,
    StrategyName.SCAFFOLD: ScaffoldSection,
    StrategyName.FEDBUFF: FedBuffSection,
    StrategyName.FEDADAM: FedAdamSection,
    StrategyName.FEDYOGI: FedYogiSection,
    StrategyName.FEDADAGRAD: FedAdagradSection,
}


def parse_strategy(table: object, path: str = "strategy") -> StrategySection:
    """Validate a ``[strategy]`` table (``name`` defaults to ``"fedavg"``).

    Raises:
        ConfigError: the first problem, naming its key path; a key of another algorithm
            names the algorithms that accept it.
    """
    parsed: StrategySection = decode(StrategySection, tagged(table, path), path)
    return parsed


def tagged(table: object, path: str = "strategy") -> dict[str, Any]:
    """A ``[strategy]`` table with its ``name`` (default ``"fedavg"``), ready for msgspec
    to decode as :data:`StrategySection`.

    Raises:
        ConfigError: not a table, an unknown name, or a key the named algorithm does not
            take (naming the algorithms that do, or where the setting lives).
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: must be a table, got {type(table).__name__}")
    name = table.get("name", str(StrategyName.FEDAVG))
    if name not in [str(n) for n in StrategyName]:
        names = ", ".join(StrategyName)
        raise ConfigError(f"{path}.name: must be one of {names}, got {name!r}")
    for key in table:
        if key != "name" and key not in SECTIONS[StrategyName(name)].__struct_fields__:
            raise ConfigError(f"{path}.{key}: {_refusal(str(key), StrategyName(name))}")
    return {**table, "name": name}


def _refusal(key: str, name: StrategyName) -> str:
    if key in _HINTS:
        return _HINTS[key]
    accepting = [str(n) for n, s in SECTIONS.items() if key in s.__struct_fields__]
    if accepting:
        return f"unknown key for {name}; accepted by {', '.join(accepting)}"
    allowed = ", ".join(sorted(SECTIONS[name].__struct_fields__))
    return f"unknown key; allowed: {allowed}"


def build_strategy(
    name: StrategyName,
    table: Mapping[str, Any],
    client: ClientConfig | None = None,
    *,
    path: str = "strategy",
    per_client: Mapping[str, ClientConfig] | None = None,
) -> Algorithm:
    """Strategy ``name`` from its ``[strategy]`` keys ``table`` (without ``name``), for
    clients trained as ``client`` (and ``per_client``): :func:`parse_strategy`, then
    the section's factory; an empty table gives the factory's defaults."""
    section = parse_strategy({**table, "name": str(name)}, path)
    return section.build(client, per_client=per_client, path=path)


def dispatch_loop(
    strategy: Strategy,
    *,
    rounds: Callable[[Strategy], _T],
    buffered: Callable[[Algorithm], _T],
) -> _T:
    """Hand ``strategy`` to the loop that runs it: an algorithm on a buffered schedule
    (FedBuff, asynchronous) to ``buffered``, every other strategy to ``rounds`` (the
    synchronous round loop).

    The one place that decides it, for simulation, deployment and the run rules alike.
    """
    if isinstance(strategy, Algorithm) and isinstance(strategy.schedule, Buffered):
        return buffered(strategy)
    return rounds(strategy)
