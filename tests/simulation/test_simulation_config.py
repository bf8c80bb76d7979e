"""The run config: sections, per-client training, and errors that name the key."""

from __future__ import annotations

import numpy as np
import pytest

from fedhive.core import Weights
from fedhive.errors import ConfigError
from fedhive.simulation.config import parse_config

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


def test_server_section_defaults_and_checks() -> None:
    assert parse_config(BASE).server.round_timeout == 60.0
    with pytest.raises(ConfigError, match=r"server\.min_clients: must be an integer >= 1"):
        parse_config({**BASE, "server": {"min_clients": 0}})
