"""The run configuration (``fedhive simulate`` and ``fedhive server``): TOML sections
onto frozen dataclasses.

```toml
[run]         app = "app:build", rounds = 30, seed = 0
[strategy]    name = "fedavg", fraction_fit = 0.1, ... (the strategy's own fields)
[client]      local_epochs = 5, batch_size = 16, learning_rate = 0.1, extra = {...} (the
              app's own scalars), dpsgd = { noise_multiplier = 1.1, max_grad_norm = 1.0 },
              partial_work = { max_local_steps = 20 }
[clients.ID]  any [client] key, for client ID only (its own batch size, budget, ...)
[simulation]  backend = "local" | "process", workers = 2
[evaluation]  centralized = true, federated_every = 0 (0: never)
[server]      app = "app:server", address = "127.0.0.1:8443", round_timeout = 60,
              min_clients = 1 (deployment; see fedhive.server.settings),
              max_examples = 65536 (the most examples one reply may claim; both modes),
              header_timeout = 10, stall_timeout = 30, streams_per_client = 2,
              concurrent_uploads = 8, max_concurrent_rpcs = 256 (what peers may hold)
[attack]      kind = "scaling", fraction = 0.3, scale = 10 (malicious clients; simulation only)
[stragglers]  fraction = 0.9, drop = false (partial work each round; simulation only)
[privacy]     noise_multiplier = 1.0, clipping_norm = 1.0, target_epsilon = 8 (DP-FedAvg)
[secagg]      clip_range = 1.0, dropout_fraction = 0.3 (secure aggregation, SecAgg+)
[devices]     distribution = "pareto", alpha = 1.5, seconds_per_epoch = 1 (simulated time)
[app]         anything: passed to the app factory as ``params``
```
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from fedhive.core._compat import StrEnum, tomllib
from fedhive.core.config import check_int, check_real, convert, from_table, to_table
from fedhive.core.extensions import from_tables, to_tables
from fedhive.core.messages import ClientConfig
from fedhive.errors import ConfigError
from fedhive.server.rules import check_run
from fedhive.server.secure import SecureAggregation
from fedhive.server.settings import ServerSection
from fedhive.simulation.attacks import AttackKind
from fedhive.simulation.backends.process import StartMethod
from fedhive.simulation.devices import DevicesSection
from fedhive.simulation.secure import SimulatedDropout, parse_secagg
from fedhive.simulation.stragglers import StragglerSection
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.base import Strategy
from fedhive.strategy.privacy_section import PrivacySection
from fedhive.strategy.registry import StrategyName, parse_strategy


class Backend(StrEnum):
    """Where simulated clients run."""

    LOCAL = "local"
    PROCESS = "process"


@dataclass(frozen=True, kw_only=True)
class RunSection:
    """Which app to run, for how many rounds, from which seed."""

    app: str
    rounds: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"rounds: must be >= 1, got {self.rounds}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed: must be in [0, 2**63), got {self.seed}")


@dataclass(frozen=True, kw_only=True)
class SimulationSection:
    """The backend that runs the clients."""

    backend: Backend = Backend.LOCAL
    workers: int = 2
    start_method: StartMethod = StartMethod.FORK

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers: must be >= 1, got {self.workers}")


@dataclass(frozen=True, kw_only=True)
class EvaluationSection:
    """Centralised evaluation each round; federated evaluation every N rounds."""

    centralized: bool = True
    federated_every: int = 0

    def __post_init__(self) -> None:
        if self.federated_every < 0:
            raise ConfigError(f"federated_every: must be >= 0, got {self.federated_every}")


@dataclass(frozen=True, kw_only=True)
class AttackSection:
    """Malicious clients (simulation only; see :mod:`fedhive.simulation.attacks`).

    ``fraction`` of the clients (chosen by the run seed) run attack ``kind``: ``scale``
    for ``scaling``, ``noise_std`` for ``gaussian``, ``source_label`` → ``target_label``
    for ``label_flip``; ``backdoor`` sets the last ``trigger_size`` input features to
    ``trigger_value`` on ``poison_fraction`` of a client's samples, labelled
    ``target_label``.
    """

    kind: AttackKind = AttackKind.NONE
    fraction: float = 0.0
    scale: float = 10.0
    noise_std: float = 1.0
    target_label: int = 0
    source_label: int = 1
    trigger_value: float = 1.0
    trigger_size: int = 4
    poison_fraction: float = 0.5

    def __post_init__(self) -> None:
        check_real("fraction", self.fraction, low=0, high=1)
        check_real("scale", self.scale, low=-math.inf)
        check_real("noise_std", self.noise_std, low=0)
        check_int("target_label", self.target_label, minimum=0)
        check_int("source_label", self.source_label, minimum=0)
        check_real("trigger_value", self.trigger_value, low=-math.inf)
        check_int("trigger_size", self.trigger_size, minimum=1)
        check_real("poison_fraction", self.poison_fraction, low=0, high=1)
        if self.kind == AttackKind.LABEL_FLIP and self.source_label == self.target_label:
            raise ConfigError(
                f"source_label: must differ from target_label, both are {self.source_label}"
            )


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """A whole ``fedhive simulate`` configuration, validated."""

    run: RunSection
    strategy_name: StrategyName
    strategy: Strategy
    strategy_table: Mapping[str, Any]
    """The resolved ``[strategy]`` table (name and every default) that built ``strategy``."""
    simulation: SimulationSection = field(default_factory=SimulationSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    server: ServerSection = field(default_factory=ServerSection)
    attack: AttackSection = field(default_factory=AttackSection)
    stragglers: StragglerSection = field(default_factory=StragglerSection)
    privacy: PrivacySection | None = None
    """None: no differential privacy."""
    secagg: SecureAggregation | None = None
    """None: no secure aggregation."""
    secagg_dropout: SimulatedDropout | None = None
    devices: DevicesSection | None = None
    """Simulated device speeds; None: no simulated clock (FedBuff: equal speeds)."""
    app: Mapping[str, Any] = field(default_factory=dict)

    def with_overrides(
        self, *, seed: int | None = None, backend: str | None = None
    ) -> SimulationConfig:
        """This config with the CLI's ``--seed`` / ``--backend`` applied (seeded DP noise
        follows the new seed)."""
        config = self
        if seed is not None:
            run = from_table(RunSection, {**dataclasses.asdict(self.run), "seed": seed}, "run")
            strategy = self.strategy
            dp = strategy.privacy if isinstance(strategy, Algorithm) else None
            if isinstance(strategy, Algorithm) and dp is not None and dp.noise_seed is not None:
                reseeded = dataclasses.replace(dp, noise_seed=seed)
                strategy = dataclasses.replace(
                    strategy, transforms=(*strategy.transforms[:-1], reseeded)
                )
            config = dataclasses.replace(config, run=run, strategy=strategy)
        if backend is not None:
            sim = dataclasses.replace(
                self.simulation, backend=convert(Backend, backend, "simulation.backend")
            )
            config = dataclasses.replace(config, simulation=sim)
        return config

    def to_json(self) -> dict[str, Any]:
        """The resolved configuration (every default filled in) as strict JSON data:
        :func:`parse_config` reads it back as this config (``deployed`` as it was)."""
        base: Any = self.strategy
        sections: dict[str, Any] = {
            "run": self.run,
            "strategy": self.strategy_table,
            "client": _client_table(base.client_config),
            "clients": {cid: _client_table(c) for cid, c in base.per_client.items()},
            "simulation": self.simulation,
            "evaluation": self.evaluation,
            "server": self.server,
            "attack": self.attack,
            "stragglers": self.stragglers,
            "privacy": self.privacy,
            "devices": self.devices,
            "app": self.app,
        }
        if self.secagg is not None:
            dropout = self.secagg_dropout or SimulatedDropout()
            sections["secagg"] = {
                **to_table(self.secagg),
                "simulated_dropout": dropout.fraction,
                "simulated_dropout_stage": dropout.stage,
            }
        plain: dict[str, Any] = to_table(sections)
        return plain


_SECTIONS = (
    "run",
    "strategy",
    "client",
    "clients",
    "simulation",
    "evaluation",
    "server",
    "attack",
    "stragglers",
    "privacy",
    "secagg",
    "devices",
    "app",
)


_CLIENT_EXTENSIONS = ("dpsgd", "partial_work")
"""The typed instructions a user sets in ``[client]`` (the strategy adds the others)."""


def _client_table(config: ClientConfig) -> dict[str, Any]:
    """The ``[client]`` table that :func:`parse_config` reads back as ``config`` (the
    instructions a strategy adds, such as FedProx's, are left to it)."""
    table: dict[str, Any] = to_table(config)
    del table["extensions"]
    tables = to_tables(config.extensions)
    return {**table, **{k: v for k, v in tables.items() if k in _CLIENT_EXTENSIONS}}


def _client(table: object, path: str) -> ClientConfig:
    plain = dict(convert(dict, table, path))
    if "extensions" in plain:
        raise ConfigError(f"{path}.extensions: unknown key; set {' or '.join(_CLIENT_EXTENSIONS)}")
    own = {k: plain.pop(k) for k in _CLIENT_EXTENSIONS if k in plain}
    config = from_table(ClientConfig, plain, path)
    _plain_json(f"{path}.extra", config.extra)
    return config.with_extensions(*from_tables(own, path, allowed=_CLIENT_EXTENSIONS))


def _clients(data: Mapping[str, Any]) -> tuple[ClientConfig, dict[str, ClientConfig]]:
    """The ``[client]`` table, and each ``[clients.ID]`` table over it."""
    client = _client(data.get("client", {}), "client")
    per_client = {}
    for client_id, table in convert(dict, data.get("clients", {}), "clients").items():
        path = f"clients.{client_id}"
        own = {**_client_table(client), **convert(dict, table, path)}
        per_client[client_id] = _client(own, path)
    return client, per_client


def parse_config(data: Mapping[str, Any], *, deployed: bool = False) -> SimulationConfig:
    """Validate a parsed TOML document (or a config.json: see ``to_json``).

    ``deployed``: for ``fedhive server``, whose DP noise comes from a CSPRNG (a
    simulation seeds it from the run's seed, unless ``privacy.secure_noise``).

    Raises:
        ConfigError: the first problem, naming its key path.
    """
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"{key}: unknown section; allowed: {', '.join(_SECTIONS)}")
    if "run" not in data:
        raise ConfigError("run: missing section (it needs at least app and rounds)")
    run = from_table(RunSection, data["run"], "run")
    client, per_client = _clients(data)
    section = parse_strategy(data.get("strategy", {}), "strategy")
    strategy = section.build(client, per_client=per_client)
    privacy = None
    if "privacy" in data:
        privacy = from_table(PrivacySection, data["privacy"], "privacy")
        strategy = privacy.wrap(strategy, seed=None if deployed else run.seed)
    secagg = dropout = None
    if "secagg" in data:
        secagg, dropout = parse_secagg(data["secagg"], privacy=privacy)
    evaluation = from_table(EvaluationSection, data.get("evaluation", {}), "evaluation")
    check_run(
        strategy, secure=secagg, federated_every=evaluation.federated_every, deployed=deployed
    )
    return SimulationConfig(
        run=run,
        strategy_name=section.strategy_name,
        strategy=strategy,
        strategy_table=msgspec.to_builtins(section),
        simulation=from_table(SimulationSection, data.get("simulation", {}), "simulation"),
        evaluation=evaluation,
        server=from_table(ServerSection, data.get("server", {}), "server"),
        attack=from_table(AttackSection, data.get("attack", {}), "attack"),
        stragglers=from_table(StragglerSection, data.get("stragglers", {}), "stragglers"),
        privacy=privacy,
        secagg=secagg,
        secagg_dropout=dropout,
        devices=(
            from_table(DevicesSection, data["devices"], "devices") if "devices" in data else None
        ),
        app=_plain_json("app", convert(dict, data.get("app", {}), "app")),
    )


def load_config(path: Path, *, deployed: bool = False) -> SimulationConfig:
    """Read and validate a TOML config file.

    Raises:
        ConfigError: unreadable file, invalid TOML, or an invalid setting.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, deployed=deployed)


def _plain_json(path: str, value: Any) -> Any:
    """``value`` (free-form settings) if strict JSON can hold it, so config.json can.

    Raises:
        ConfigError: a non-finite number or a TOML date or time, naming its key.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            _plain_json(f"{path}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _plain_json(f"{path}[{index}]", item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: must be finite (config.json is strict JSON), got {value}")
    elif not isinstance(value, (str, int, float)):
        raise ConfigError(f"{path}: JSON cannot hold a {type(value).__name__}, got {value!r}")
    return value
