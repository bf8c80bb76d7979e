"""Typed client instructions: valid when built, one per type, read by type."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from fedhive.core.extensions import (
    TABLES,
    ClipAndNoise,
    DpSgd,
    Extension,
    PartialWork,
    Proximal,
    SecAggWeighting,
    Weighting,
)
from fedhive.core.messages import ClientConfig
from fedhive.errors import ConfigError


def test_a_config_is_read_by_type() -> None:
    config = ClientConfig(extensions=(Proximal(mu=0.5), PartialWork(max_local_steps=3)))
    assert config.extension(Proximal) == Proximal(mu=0.5)
    assert config.extension(PartialWork) == PartialWork(max_local_steps=3)
    assert config.extension(DpSgd) is None
    assert ClientConfig().extension(Proximal) is None


def test_a_config_holds_at_most_one_instruction_of_each_type() -> None:
    with pytest.raises(ConfigError, match="Proximal given more than once"):
        ClientConfig(extensions=(Proximal(mu=0.5), Proximal(mu=0.1)))


@dataclass(frozen=True)
class Homemade(Extension):
    """An instruction no codec knows."""


def test_only_instructions_the_wire_knows_are_extensions() -> None:
    for bad in ({"mu": 0.5}, Extension(), Homemade()):
        with pytest.raises(ConfigError, match="not a client instruction"):
            ClientConfig(extensions=(bad,))  # type: ignore[arg-type]


def test_with_extensions_replaces_the_instruction_of_its_type() -> None:
    config = ClientConfig(extensions=(Proximal(mu=0.5),), extra={"tag": 1})
    again = config.with_extensions(Proximal(mu=0.1), PartialWork(max_local_steps=2))
    assert again.extension(Proximal) == Proximal(mu=0.1)
    assert again.extension(PartialWork) == PartialWork(max_local_steps=2)
    assert dict(again.extra) == {"tag": 1}
    assert config.extension(Proximal) == Proximal(mu=0.5)  # frozen: a new config


def test_the_order_instructions_are_given_in_does_not_matter() -> None:
    a, b = Proximal(mu=0.5), SecAggWeighting(weighting=Weighting.UNIFORM)
    assert ClientConfig(extensions=(a, b)) == ClientConfig(extensions=(b, a))


REFUSED: dict[str, tuple[Any, dict[str, Any], str]] = {
    "negative mu": (Proximal, {"mu": -0.1}, "mu"),
    "nan mu": (Proximal, {"mu": math.nan}, "mu"),
    "bool mu": (Proximal, {"mu": True}, "mu"),
    "zero steps": (PartialWork, {"max_local_steps": 0}, "max_local_steps"),
    "float steps": (PartialWork, {"max_local_steps": 1.5}, "max_local_steps"),
    "zero z": (ClipAndNoise, {"noise_multiplier": 0.0}, "noise_multiplier"),
    "zero norm": (ClipAndNoise, {"noise_multiplier": 1, "clipping_norm": 0}, "clipping_norm"),
    "infinite std": (
        ClipAndNoise,
        {"noise_multiplier": 1, "clipping_norm": 1, "noise_std": math.inf},
        "noise_std",
    ),
    "noise unbounded": (ClipAndNoise, {"noise_multiplier": 1, "noise_std": 1.0}, "noise_std"),
    "string seeded": (ClipAndNoise, {"noise_multiplier": 1, "seeded": "no"}, "seeded"),
    "string weighting": (SecAggWeighting, {"weighting": "uniform"}, "weighting"),
    "zero grad norm": (DpSgd, {"noise_multiplier": 1, "max_grad_norm": 0}, "max_grad_norm"),
    "delta one": (DpSgd, {"noise_multiplier": 1, "max_grad_norm": 1, "delta": 1.0}, "delta"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_an_invalid_instruction_cannot_be_built(case: tuple[Any, dict[str, Any], str]) -> None:
    cls, fields, name = case
    with pytest.raises(ConfigError, match=name):
        cls(**fields)


def test_every_instruction_type_has_a_table_name() -> None:
    assert set(TABLES.values()) == set(Extension.__subclasses__()) - {Homemade}
