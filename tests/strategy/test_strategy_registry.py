"""Strategies, aggregators and server optimizers chosen by name in a config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

import fedhive
from fedhive.config import parse_config
from fedhive.core.extensions import Proximal
from fedhive.core.messages import ClientConfig
from fedhive.errors import ConfigError
from fedhive.strategy import (
    Strategy,
    StrategyName,
    build_strategy,
    dispatch_loop,
    fedadagrad,
    fedadam,
    fedavg,
    fedbuff,
    fedprox,
    fedyogi,
    scaffold,
)
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.compose import WeightedMean
from fedhive.strategy.optimizers import ServerAdagrad, ServerAdam, ServerYogi
from fedhive.strategy.registry import parse_strategy
from fedhive.strategy.robust import Bulyan, CoordinateMedian, Krum, NormBound, TrimmedMean

RUN = {"run": {"app": "app:build", "rounds": 1}}


def strategy(table: dict[str, object]) -> Algorithm:
    built = parse_config({**RUN, "strategy": table}).strategy
    assert isinstance(built, Algorithm)
    return built


FACTORIES = {
    StrategyName.FEDAVG: fedavg,
    StrategyName.FEDPROX: fedprox,
    StrategyName.SCAFFOLD: scaffold,
    StrategyName.FEDBUFF: fedbuff,
    StrategyName.FEDADAM: fedadam,
    StrategyName.FEDYOGI: fedyogi,
    StrategyName.FEDADAGRAD: fedadagrad,
}


def test_every_config_name_has_a_factory() -> None:
    assert set(FACTORIES) == set(StrategyName)


@pytest.mark.parametrize("name", list(StrategyName))
def test_a_factory_with_its_defaults_builds_what_the_bare_config_name_builds(
    name: StrategyName,
) -> None:
    assert FACTORIES[name]() == build_strategy(name, {})
    assert FACTORIES[name]() == parse_config({**RUN, "strategy": {"name": str(name)}}).strategy


def test_python_and_toml_build_equal_strategies_from_the_same_settings() -> None:
    client = ClientConfig(local_epochs=2)
    slow = ClientConfig(batch_size=4)
    assert fedprox(
        mu=0.3, fraction_fit=0.5, client_config=client, per_client={"slow": slow}
    ) == build_strategy(
        StrategyName.FEDPROX,
        {"proximal_mu": 0.3, "fraction_fit": 0.5},
        client,
        per_client={"slow": slow},
    )
    assert fedadam(server_learning_rate=0.1, beta_2=0.9, aggregator=CoordinateMedian()) == (
        build_strategy(
            StrategyName.FEDADAM,
            {"server_learning_rate": 0.1, "beta_2": 0.9, "aggregator": "median"},
        )
    )
    assert fedbuff(buffer_size=3, server_learning_rate=0.5) == build_strategy(
        StrategyName.FEDBUFF, {"buffer_size": 3, "server_learning_rate": 0.5}
    )


def test_the_adaptive_factories_default_to_the_configs_server_learning_rate() -> None:
    for factory, cls in ((fedadam, ServerAdam), (fedyogi, ServerYogi)):
        built = factory()
        assert built.server_optimizer == cls(learning_rate=0.01)
        assert built.server_learning_rate == 0.01
    # FedAdagrad keeps the first-moment decay the config has always given it (0.9, as
    # FedAdam's and FedYogi's), so seeded runs of `name = "fedadagrad"` are unchanged.
    assert fedadagrad().server_optimizer == ServerAdagrad(learning_rate=0.01, beta_1=0.9)
    assert build_strategy(StrategyName.FEDADAGRAD, {}) == fedadagrad()


def test_fedavg_is_the_default_with_a_weighted_mean() -> None:
    s = strategy({})
    assert isinstance(s.aggregator, WeightedMean)
    assert s.server_optimizer is None


@pytest.mark.parametrize(
    ("name", "cls"),
    [("fedadam", ServerAdam), ("fedyogi", ServerYogi), ("fedadagrad", ServerAdagrad)],
)
def test_adaptive_strategies_get_their_server_optimizer(name: str, cls: type) -> None:
    s = strategy({"name": name, "server_learning_rate": 0.05, "tau": 0.01})
    assert isinstance(s.server_optimizer, cls)
    assert s.server_optimizer.learning_rate == 0.05
    assert s.server_optimizer.tau == 0.01


def test_fedprox_puts_mu_into_every_clients_config() -> None:
    config = parse_config(
        {
            **RUN,
            "strategy": {"name": "fedprox", "proximal_mu": 0.5},
            "clients": {"slow": {"batch_size": 2}},
        }
    )
    s = config.strategy
    assert isinstance(s, Algorithm)
    assert s.client_config.extension(Proximal) == Proximal(mu=0.5)
    assert s.per_client["slow"].extension(Proximal) == Proximal(mu=0.5)
    assert dict(s.client_config.extra) == {}


@pytest.mark.parametrize(
    ("table", "cls"),
    [
        ({"aggregator": "median"}, CoordinateMedian),
        ({"aggregator": "trimmed_mean", "trim_fraction": 0.2}, TrimmedMean),
        ({"aggregator": "krum", "byzantine": 1, "multi": 2}, Krum),
        ({"aggregator": "bulyan", "byzantine": 1}, Bulyan),
        ({"aggregator": "mean", "max_update_norm": 3.0}, NormBound),
    ],
)
def test_aggregators_by_name(table: dict[str, object], cls: type) -> None:
    assert isinstance(strategy(table).aggregator, cls)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"aggregator": "mode"}, "^strategy.aggregator: must be one of mean, median"),
        ({"aggregator": "trimmed_mean", "trim_fraction": 0.9}, "^strategy.trim_fraction"),
        ({"name": "fedadagrad", "beta_2": 0.5}, "^strategy.beta_2: unknown key for fedadagrad"),
        ({"name": "fedprox", "proximal_mu": -1.0}, "strategy.proximal_mu"),
        (
            {"name": "fedadam", "beta_1": "high"},
            r"strategy.beta_1: must be in \[0, 1\), got 'high'",
        ),
        ({"beta_1": 0.9}, "strategy.beta_1: unknown key"),
        ({"server_optimizer": "adam"}, "strategy.server_optimizer"),
    ],
)
def test_bad_strategy_settings_name_their_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        strategy(table)


def test_fedbuff_runs_on_the_buffered_loop_every_other_strategy_on_rounds() -> None:
    def rounds(strategy: Strategy) -> tuple[str, object]:
        return "rounds", strategy

    def buffered(strategy: Algorithm) -> tuple[str, object]:
        return "buffered", strategy

    asynchronous = fedbuff()
    assert dispatch_loop(asynchronous, rounds=rounds, buffered=buffered) == (
        "buffered",
        asynchronous,
    )
    for plain in (Algorithm(), scaffold()):
        assert dispatch_loop(plain, rounds=rounds, buffered=buffered) == ("rounds", plain)


def test_only_the_dispatcher_decides_which_loop_runs_a_strategy() -> None:
    # A buffered schedule is what makes an algorithm FedBuff. Besides the dispatcher, only
    # the rules that refuse parts which do not compose with it may look at it: the chain
    # rules, the Algorithm's `buffered` accessor and the [privacy] section's refusal. No
    # loop (server, simulation, deployment) decides for itself.
    src = Path(fedhive.__file__).parent
    testing = [
        (str(path.relative_to(src)), number)
        for path in sorted(src.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"isinstance\([^)]*\bBuffered\b", line)
    ]
    files = [name for name, _ in testing]
    assert files.count("strategy/registry.py") == 1, testing
    assert set(files) == {
        "strategy/registry.py",
        "strategy/chain.py",
        "strategy/algorithm.py",
        "strategy/privacy_section.py",
    }, testing
    (line,) = [n for name, n in testing if name == "strategy/registry.py"]
    registry = (src / "strategy" / "registry.py").read_text(encoding="utf-8").splitlines()
    dispatcher = max(i for i, text in enumerate(registry[:line], 1) if text.startswith("def "))
    assert registry[dispatcher - 1].startswith("def dispatch_loop("), testing


def test_a_key_of_another_algorithm_names_the_algorithms_that_accept_it() -> None:
    with pytest.raises(ConfigError) as raised:
        strategy({"name": "fedavg", "beta_1": 0.9})
    assert str(raised.value) == (
        "strategy.beta_1: unknown key for fedavg; accepted by fedadam, fedyogi, fedadagrad"
    )
    with pytest.raises(ConfigError, match=r"^strategy\.buffer_size: .* accepted by fedbuff$"):
        strategy({"name": "scaffold", "buffer_size": 4})


def test_an_unknown_key_lists_exactly_the_keys_its_algorithm_accepts() -> None:
    with pytest.raises(ConfigError) as raised:
        strategy({"name": "fedprox", "lr": 0.1})
    allowed = set(str(raised.value).split("allowed: ")[1].split(", "))
    assert {"proximal_mu", "trim_fraction", "byzantine", "multi", "fraction_fit"} <= allowed
    assert not allowed & {"client_config", "per_client", "server_optimizer", "beta_1"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"multi": 0}, "strategy.multi: must be an integer >= 1, got 0"),
        ({"byzantine": True}, "strategy.byzantine: must be an integer >= 0, got True"),
        ({"fraction_fit": 1.5}, r"strategy.fraction_fit: must be in \(0, 1\], got 1.5"),
        ({"name": "fedyogi", "tau": 0}, "strategy.tau: must be a finite number > 0, got 0"),
        ({"name": "fedsgd"}, "strategy.name: must be one of fedavg, fedprox"),
    ],
)
def test_the_sections_constraints_are_checked_before_anything_is_built(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        parse_strategy(table)


@pytest.mark.parametrize("name", list(StrategyName))
def test_a_resolved_section_is_strict_json_that_parses_back_to_itself(name: StrategyName) -> None:
    section = parse_strategy({"name": str(name), "fraction_fit": 1})
    resolved = json.loads(json.dumps(msgspec.to_builtins(section), allow_nan=False))
    assert resolved["name"] == str(name)
    assert parse_strategy(resolved) == section
    assert section.build() == FACTORIES[name](fraction_fit=1.0)
