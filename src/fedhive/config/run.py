"""The run configuration of ``fedhive simulate`` and ``fedhive server``: one msgspec model.

```toml
[run]         app = "app:build", rounds = 30, seed = 0
[strategy]    name = "fedavg", fraction_fit = 0.1, ... (the algorithm's own keys)
[client]      local_epochs = 5, batch_size = 16, learning_rate = 0.1, extra = {...} (the
              app's own scalars), dpsgd = { noise_multiplier = 1.1, max_grad_norm = 1.0 },
              partial_work = { max_local_steps = 20 },
              compression = { quantize = { bits = 8 }, zstd = { level = 3 } }
[clients.ID]  any [client] key, for client ID only (its own batch size, budget, ...)
[simulation]  backend = "local" | "process" | "ray", workers = 2, ray_address = "auto"
[evaluation]  centralized = true, federated_every = 0 (0: never)
[server]      app = "app:server", address = "127.0.0.1:8443", ... (fedhive.server.settings)
[attack]      kind = "scaling", fraction = 0.3, scale = 10 (malicious clients; simulation only)
[stragglers]  fraction = 0.9, drop = false (partial work each round; simulation only)
[privacy]     noise_multiplier = 1.0, clipping_norm = 1.0, target_epsilon = 8 (DP-FedAvg)
[secagg]      clip_range = 1.0, dropout_fraction = 0.3 (secure aggregation, SecAgg+)
[devices]     distribution = "pareto", alpha = 1.5, seconds_per_epoch = 1 (simulated time)
[app]         anything: passed to the app factory as ``params``
```

:class:`Document` declares the whole file, each section a frozen msgspec Struct (the
``[strategy]`` section a tagged union, one Struct per algorithm); :func:`parse_config`
decodes it with ``msgspec.convert`` and builds the run's library objects (the strategy,
DP, SecAgg+) from it. :meth:`RunConfig.to_json` is the same Document, every default
filled in, as strict JSON: config.json, which :func:`parse_config` reads back equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from fedhive.config.secagg import SecAggSection, SimulatedDropout, secagg_table
from fedhive.config.sections import (
    ClientSection,
    EvaluationSection,
    RunSection,
    client_section,
    plain_json,
)
from fedhive.config.simulated import (
    AttackSection,
    DevicesSection,
    SimulationSection,
    StragglerSection,
)
from fedhive.core._compat import tomllib
from fedhive.core.decode import decode, plain
from fedhive.errors import ConfigError
from fedhive.server.rules import check_run
from fedhive.server.secure import SecureAggregation
from fedhive.server.settings import ServerSection
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.base import Strategy
from fedhive.strategy.privacy_section import PrivacySection
from fedhive.strategy.registry import FedAvgSection, StrategyName, StrategySection, tagged


class Document(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole run config file, as written (config.json: with every default)."""

    run: RunSection
    strategy: StrategySection = FedAvgSection()
    client: ClientSection = ClientSection()
    clients: dict[str, ClientSection] = {}
    """Each client's own training: its keys over ``[client]``'s."""
    simulation: SimulationSection = SimulationSection()
    evaluation: EvaluationSection = EvaluationSection()
    server: ServerSection = ServerSection()
    attack: AttackSection = AttackSection()
    stragglers: StragglerSection = StragglerSection()
    privacy: PrivacySection | None = None
    """None: no differential privacy."""
    secagg: SecAggSection | None = None
    """None: no secure aggregation."""
    devices: DevicesSection | None = None
    """Simulated device speeds; None: no simulated clock (FedBuff: equal speeds)."""
    app: dict[str, Any] = {}


SECTIONS = Document.__struct_fields__


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A whole run configuration, validated, with the objects it builds."""

    run: RunSection
    strategy_section: StrategySection
    """The resolved ``[strategy]`` section (every default) that built ``strategy``."""
    strategy: Strategy
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

    @property
    def strategy_name(self) -> StrategyName:
        """The algorithm ``[strategy] name`` selects."""
        return self.strategy_section.strategy_name

    def with_overrides(self, *, seed: int | None = None, backend: str | None = None) -> RunConfig:
        """This config with the CLI's ``--seed`` / ``--backend`` applied (seeded DP noise
        follows the new seed)."""
        config = self
        if seed is not None:
            run = decode(RunSection, {**plain(self.run), "seed": seed}, "run")
            strategy = self.strategy
            dp = strategy.privacy if isinstance(strategy, Algorithm) else None
            if isinstance(strategy, Algorithm) and dp is not None and dp.noise_seed is not None:
                reseeded = dataclasses.replace(dp, noise_seed=seed)
                strategy = dataclasses.replace(
                    strategy, transforms=(*strategy.transforms[:-1], reseeded)
                )
            config = dataclasses.replace(config, run=run, strategy=strategy)
        if backend is not None:
            table = {**plain(self.simulation), "backend": backend}
            if backend != "ray":  # another backend on the command line: no cluster to join
                table.pop("ray_address", None)
            config = dataclasses.replace(
                config, simulation=decode(SimulationSection, table, "simulation")
            )
        return config

    def to_json(self) -> dict[str, Any]:
        """The resolved configuration (every default filled in) as strict JSON data:
        :func:`parse_config` reads it back as this config (``deployed`` as it was)."""
        base: Any = self.strategy
        secagg = None
        if self.secagg is not None:
            secagg = secagg_table(self.secagg, self.secagg_dropout or SimulatedDropout())
        document = Document(
            run=self.run,
            strategy=self.strategy_section,
            client=client_section(base.client_config),
            clients={cid: client_section(c) for cid, c in base.per_client.items()},
            simulation=self.simulation,
            evaluation=self.evaluation,
            server=self.server,
            attack=self.attack,
            stragglers=self.stragglers,
            privacy=self.privacy,
            secagg=secagg,
            devices=self.devices,
            app=dict(self.app),
        )
        written: dict[str, Any] = plain(document)
        return written


def parse_config(data: Mapping[str, Any], *, deployed: bool = False) -> RunConfig:
    """Validate a parsed TOML document (or a config.json: see ``to_json``).

    ``deployed``: for ``fedhive server``, whose DP noise comes from a CSPRNG (a
    simulation seeds it from the run's seed, unless ``privacy.secure_noise``).

    Raises:
        ConfigError: the first problem, naming its key path.
    """
    document = _decode(data)
    client = document.client.build("client")
    per_client = {cid: c.build(f"clients.{cid}") for cid, c in document.clients.items()}
    section = document.strategy
    strategy: Strategy = section.build(client, per_client=per_client)
    privacy = document.privacy
    if privacy is not None:
        strategy = privacy.wrap(strategy, seed=None if deployed else document.run.seed)
    secagg = dropout = None
    if document.secagg is not None:
        secagg, dropout = document.secagg.build(private=privacy is not None)
    check_run(
        strategy,
        secure=secagg,
        federated_every=document.evaluation.federated_every,
        deployed=deployed,
    )
    return RunConfig(
        run=document.run,
        strategy_section=section,
        strategy=strategy,
        simulation=document.simulation,
        evaluation=document.evaluation,
        server=document.server,
        attack=document.attack,
        stragglers=document.stragglers,
        privacy=privacy,
        secagg=secagg,
        secagg_dropout=dropout,
        devices=document.devices,
        app=plain_json("app", document.app),
    )


def _decode(data: Mapping[str, Any]) -> Document:
    """The :class:`Document` of ``data``; ``[strategy]`` and each ``[clients.ID]`` are
    decoded first, so their errors name the algorithm's keys and the client."""
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown section; allowed: {', '.join(SECTIONS)}")
    if "run" not in data:
        raise ConfigError("run: missing section (it needs at least app and rounds)")
    prepared = dict(data)
    prepared["strategy"] = tagged(data.get("strategy", {}), "strategy")
    client = decode(ClientSection, data.get("client", {}), "client")
    clients = data.get("clients", {})
    if not isinstance(clients, Mapping):
        raise ConfigError(f"clients: must be a table, got {type(clients).__name__}")
    overlays = {}
    for cid, table in clients.items():
        path = f"clients.{cid}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{path}: must be a table, got {type(table).__name__}")
        overlays[cid] = decode(ClientSection, {**msgspec.to_builtins(client), **table}, path)
    prepared["client"], prepared["clients"] = client, overlays
    document: Document = decode(Document, prepared, "")
    return document


def load_config(path: Path, *, deployed: bool = False) -> RunConfig:
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
