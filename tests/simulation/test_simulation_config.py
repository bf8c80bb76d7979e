"""The run config: sections, per-client training, and errors that name the key."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedhive.config import RunConfig, load_config, parse_config
from fedhive.core import Weights
from fedhive.core.canonical import canonical_json
from fedhive.core.extensions import DpSgd, PartialWork
from fedhive.errors import ConfigError
from fedhive.server.verify import ReplyPolicy
from fedhive.simulation.engine import simulate
from fedhive.simulation.output import RunWriter
from fedhive.strategy.algorithm import Algorithm

TESTS = Path(__file__).resolve().parents[1]

BASE = {"run": {"app": "app:build", "rounds": 2}, "client": {"batch_size": 16}}


def test_a_client_can_have_its_own_training() -> None:
    config = parse_config({**BASE, "clients": {"phone-7": {"batch_size": 4, "learning_rate": 0.5}}})
    weights = Weights({"w": np.zeros(2, np.float32)})
    rng = np.random.default_rng(0)
    strategy = config.strategy
    instructions = strategy.configure_fit({}, 1, weights, ["phone-7", "server-1"], rng)
    by_id = {i.client_id: i.config for i in instructions}
    assert by_id["phone-7"].batch_size == 4
    assert by_id["phone-7"].learning_rate == 0.5
    assert by_id["phone-7"].local_epochs == 1  # the rest comes from [client]
    assert by_id["server-1"].batch_size == 16
    assert config.to_json()["clients"]["phone-7"]["batch_size"] == 4


def test_a_client_budget_from_the_config() -> None:
    table = {"privacy_budget": {"epsilon_max": 3.0, "delta": 1e-5}}
    config = parse_config({**BASE, "clients": {"phone-7": table}})
    budget = config.strategy.per_client["phone-7"].privacy_budget  # type: ignore[attr-defined]
    assert (budget.epsilon_max, budget.delta) == (3.0, 1e-5)
    assert (budget.min_noise_multiplier, budget.clipping_norm) == (None, None)


def test_a_client_budget_names_the_devices_own_noise_and_clipping() -> None:
    table = {"epsilon_max": 3.0, "delta": 1e-5, "min_noise_multiplier": 2.0, "clipping_norm": 0.5}
    config = parse_config({**BASE, "clients": {"phone-7": {"privacy_budget": table}}})
    budget = config.strategy.per_client["phone-7"].privacy_budget  # type: ignore[attr-defined]
    assert (budget.min_noise_multiplier, budget.clipping_norm) == (2.0, 0.5)
    bad = {"phone-7": {"privacy_budget": {**table, "clipping_norm": -1.0}}}
    with pytest.raises(ConfigError, match=r"clients\.phone-7\.privacy_budget\.clipping_norm"):
        parse_config({**BASE, "clients": bad})


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        ({"phone-7": {"batch": 4}}, "clients.phone-7.batch: unknown key"),
        ({"phone-7": {"batch_size": 0}}, "clients.phone-7.batch_size: must be an integer >= 1"),
        ({"phone-7": 3}, "clients.phone-7: must be a table"),
    ],
)
def test_bad_per_client_settings_name_their_key(clients: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "clients": clients})


def test_dpsgd_and_partial_work_are_typed_client_tables() -> None:
    dpsgd = {"noise_multiplier": 1.1, "max_grad_norm": 1.0}
    config = parse_config(
        {
            **BASE,
            "client": {"dpsgd": dpsgd, "extra": {"tag": "x"}},
            "clients": {"phone-7": {"partial_work": {"max_local_steps": 5}}},
        }
    )
    strategy = config.strategy
    assert isinstance(strategy, Algorithm)
    expected = DpSgd(noise_multiplier=1.1, max_grad_norm=1.0)
    assert strategy.client_config.extensions == (expected,)
    assert dict(strategy.client_config.extra) == {"tag": "x"}  # only the app's own
    phone = strategy.per_client["phone-7"]
    assert phone.extension(DpSgd) == expected  # inherited from [client]
    assert phone.extension(PartialWork) == PartialWork(max_local_steps=5)
    written = config.to_json()
    assert written["client"]["dpsgd"] == {**dpsgd, "delta": 1e-5}
    assert written["clients"]["phone-7"]["partial_work"] == {"max_local_steps": 5}
    assert "extensions" not in written["client"]


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"dpsgd": {"noise_multiplier": 1.1}}, r"client\.dpsgd\.max_grad_norm: missing"),
        ({"dpsgd": {"noise_multiplier": 0, "max_grad_norm": 1}}, r"client\.dpsgd\.noise_multi"),
        ({"partial_work": {"max_local_steps": 0}}, r"client\.partial_work\.max_local_steps"),
        ({"proximal": {"mu": 0.1}}, r"client\.proximal: unknown key"),
        ({"extensions": []}, r"client\.extensions: unknown key"),
    ],
)
def test_bad_client_instruction_tables_name_their_key(client: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "client": client})


def test_server_section_defaults_and_checks() -> None:
    assert parse_config(BASE).server.round_timeout == 60.0
    with pytest.raises(ConfigError, match=r"server\.min_clients: must be an integer >= 1"):
        parse_config({**BASE, "server": {"min_clients": 0}})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("header_timeout", 0, r"server\.header_timeout: must be a finite number > 0"),
        ("stall_timeout", -1.0, r"server\.stall_timeout: must be a finite number > 0"),
        ("streams_per_client", 0, r"server\.streams_per_client: must be an integer >= 1"),
        ("concurrent_uploads", 0, r"server\.concurrent_uploads: must be an integer >= 1"),
        ("max_concurrent_rpcs", 0, r"server\.max_concurrent_rpcs: must be an integer >= 1"),
        ("round_timeout", math.inf, r"server\.round_timeout: must be a finite number > 0"),
    ],
)
def test_server_limits_that_would_refuse_everyone_are_refused(
    key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "server": {key: value}})


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*/*.toml"))
RUN = {"app": "app:build", "rounds": 2, "seed": 4}
BUDGET = {"epsilon_max": 3.0, "delta": 1e-5}
KRUM = {"aggregator": "krum", "byzantine": 1, "max_update_norm": 2.0}
WITH_DEFAULTS: dict[str, dict[str, Any]] = {
    "privacy-defaults": {"run": RUN, "privacy": {}},  # target_epsilon = inf
    "fedprox-per-client": {
        "run": RUN,
        "strategy": {"name": "fedprox", "proximal_mu": 0.1},
        "clients": {"phone-7": {"batch_size": 4, "privacy_budget": BUDGET}},
    },
    "fedprox-dpsgd-partial-work": {
        "run": RUN,
        "strategy": {"name": "fedprox", "proximal_mu": 0.1},
        "client": {"dpsgd": {"noise_multiplier": 1.1, "max_grad_norm": 1.0}},
        "clients": {"phone-7": {"partial_work": {"max_local_steps": 3}}},
    },
    "fedadam": {"run": RUN, "strategy": {"name": "fedadam", "beta_1": 0.8}},
    "fedadagrad": {"run": RUN, "strategy": {"name": "fedadagrad", "server_learning_rate": 0.1}},
    "fedbuff-devices": {
        "run": RUN,
        "strategy": {"name": "fedbuff", "buffer_size": 3},
        "devices": {"distribution": "lognormal", "sigma": 1.5},
    },
    "scaffold-krum": {
        "run": RUN,
        "strategy": {"name": "scaffold", **KRUM},
        "attack": {"kind": "scaling", "fraction": 0.2},
        "stragglers": {"fraction": 0.5},
    },
    "server-limits": {
        "run": RUN,
        "server": {
            "header_timeout": 2.5,
            "stall_timeout": 7,
            "streams_per_client": 3,
            "concurrent_uploads": 4,
            "max_concurrent_rpcs": 64,
        },
    },
    "distributed-dp-secagg": {
        "run": RUN,
        "privacy": {"mode": "distributed", "target_epsilon": 5.0, "accountant": "pld"},
        "secagg": {"simulated_dropout": 0.1, "simulated_dropout_stage": "unmasking"},
        "app": {"layers": [32, 16], "nested": {"name": "x"}},
    },
}


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def written_config(config: RunConfig, folder: Path) -> Any:
    """What a run writes as config.json, read back as strict JSON."""
    RunWriter(folder, config.to_json())
    return strict_json((folder / "config.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("deployed", [False, True], ids=["simulate", "server"])
def test_every_example_config_json_loads_back_as_the_same_config(
    path: Path, deployed: bool, tmp_path: Path
) -> None:
    config = load_config(path, deployed=deployed)
    again = parse_config(written_config(config, tmp_path), deployed=deployed)
    assert again == config
    assert again.to_json() == config.to_json()


@pytest.mark.parametrize("data", WITH_DEFAULTS.values(), ids=WITH_DEFAULTS.keys())
@pytest.mark.parametrize("deployed", [False, True], ids=["simulate", "server"])
def test_a_config_with_defaults_json_loads_back_as_the_same_config(
    data: dict[str, Any], deployed: bool, tmp_path: Path
) -> None:
    config = parse_config(data, deployed=deployed)
    written = written_config(config, tmp_path)
    assert parse_config(written, deployed=deployed) == config
    assert written["client"]["batch_size"] == 32  # every default is filled in
    assert written["strategy"]["aggregator"] in ("mean", "krum")


def test_the_default_target_epsilon_is_written_as_strict_json(tmp_path: Path) -> None:
    config = parse_config({"run": RUN, "privacy": {}})
    assert config.privacy is not None
    assert config.privacy.target_epsilon == math.inf
    written = written_config(config, tmp_path)
    assert written["privacy"]["target_epsilon"] == "inf"
    canonical_json(config.to_json())  # the audit log accepts it


def test_a_seed_override_reseeds_the_dp_noise() -> None:
    config = parse_config({"run": RUN, "privacy": {}}).with_overrides(seed=9)
    assert isinstance(config.strategy, Algorithm)
    assert config.strategy.privacy is not None
    assert config.strategy.privacy.noise_seed == 9
    assert parse_config(config.to_json()) == config


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ({"x": math.inf}, r"app\.x: must be finite"),
        ({"when": datetime.date(2026, 1, 1)}, r"app\.when: .*JSON"),
        ({"deep": {"list": [1.0, math.nan]}}, r"app\.deep\.list\[1\]: must be finite"),
    ],
)
def test_app_settings_that_json_cannot_hold_are_refused(app: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"run": RUN, "app": app})


def test_server_max_examples_sets_the_reply_policy() -> None:
    assert parse_config(BASE).server.policy() == ReplyPolicy(max_examples=65536)
    config = parse_config({**BASE, "server": {"max_examples": 100}})
    assert config.server.policy() == ReplyPolicy(max_examples=100)
    assert config.to_json()["server"]["max_examples"] == 100
    for bad in (0, 1 << 30):
        with pytest.raises(ConfigError, match=r"server\.max_examples"):
            parse_config({**BASE, "server": {"max_examples": bad}})


def test_a_simulation_refuses_claims_above_its_max_examples() -> None:
    # fake_app's good-i claims i + 1 examples: with max_examples = 2, good-2 is refused
    run = {"app": "fake_app:build", "rounds": 1}
    data = {"run": run, "app": {"clients": ["good-0", "good-1", "good-2"]}}
    config = parse_config({**data, "server": {"max_examples": 2}})
    record = simulate(config, base_dir=TESTS).history[0]
    assert record.committed
    assert dict(record.fit.failures) == {"verify:validation": 1}
    assert sorted(record.fit.contributors) == ["good-0", "good-1"]


def test_a_check_between_keys_of_a_section_names_the_section() -> None:
    attack = {"kind": "label_flip", "source_label": 2, "target_label": 2}
    with pytest.raises(ConfigError, match=r"^attack\.source_label: must differ from target_label"):
        parse_config({**BASE, "attack": attack})


def test_a_section_of_the_wrong_shape_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^evaluation: must be a table, got int$"):
        parse_config({**BASE, "evaluation": 3})
    with pytest.raises(ConfigError, match=r"^run\.rounds: missing required key$"):
        parse_config({"run": {"app": "app:build"}})
