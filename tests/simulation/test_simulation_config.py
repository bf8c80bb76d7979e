"""The run config: sections, per-client training, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedhive.core import Weights
from fedhive.errors import ConfigError
from fedhive.server.verify import ReplyPolicy
from fedhive.simulation.config import parse_config
from fedhive.simulation.engine import simulate

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


def test_server_section_defaults_and_checks() -> None:
    assert parse_config(BASE).server.round_timeout == 60.0
    with pytest.raises(ConfigError, match=r"server\.min_clients: must be an integer >= 1"):
        parse_config({**BASE, "server": {"min_clients": 0}})


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
    assert dict(record.fit.failures) == {"verify:ValidationError": 1}
    assert sorted(record.fit.contributors) == ["good-0", "good-1"]
