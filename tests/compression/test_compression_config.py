"""``[client] compression``: the TOML form, its errors, and config.json's round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedhive.config import load_config, parse_config
from fedhive.core.codecs import Pipeline, RandomK, StochasticQuantization, TopK, Zstd
from fedhive.core.extensions import Compression
from fedhive.errors import ConfigError

RUN = {"app": "app:build", "rounds": 2}
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp"


def pipeline_of(compression: dict[str, Any], *, deployed: bool = False) -> Pipeline:
    config = parse_config({"run": RUN, "client": {"compression": compression}}, deployed=deployed)
    ask = config.strategy.client_config.extension(Compression)  # type: ignore[attr-defined]
    assert ask is not None
    return ask.pipeline


@pytest.mark.parametrize("deployed", [False, True], ids=["simulate", "server"])
@pytest.mark.parametrize(
    ("table", "stages"),
    [
        (
            {"quantize": {"bits": 8, "block_size": 256}, "zstd": {"level": 3}},
            (StochasticQuantization(8, 256), Zstd(3)),
        ),
        ({"quantize": {"bits": 4}}, (StochasticQuantization(4),)),
        ({"zstd": {}, "topk": {"fraction": 0.01}}, (TopK(0.01), Zstd())),  # order is fixed
        ({"randomk": {"fraction": 0.1, "error_feedback": True}}, (RandomK(0.1, True),)),
        ({"zstd": {"level": 19}}, (Zstd(19),)),
    ],
)
def test_a_compression_table_builds_its_pipeline_and_reads_back_equal(
    table: dict[str, Any], stages: tuple[object, ...], deployed: bool
) -> None:
    assert pipeline_of(table, deployed=deployed) == Pipeline(stages)  # type: ignore[arg-type]
    config = parse_config({"run": RUN, "client": {"compression": table}}, deployed=deployed)
    assert parse_config(config.to_json(), deployed=deployed) == config


def test_a_client_of_its_own_gets_its_own_pipeline_over_the_shared_one() -> None:
    config = parse_config(
        {
            "run": RUN,
            "client": {"compression": {"quantize": {"bits": 8}}},
            "clients": {"phone-7": {"compression": {"topk": {"fraction": 0.05}}}},
        }
    )
    strategy: Any = config.strategy
    assert strategy.client_config.extension(Compression).pipeline.lossy == StochasticQuantization(8)
    assert strategy.per_client["phone-7"].extension(Compression).pipeline.lossy == TopK(0.05)
    assert parse_config(config.to_json()) == config


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"lzma": {}},
            r"\.lzma: unknown key; allowed: quantize, randomk, topk, zstd",
        ),
        (
            {"quantize": {}, "topk": {"fraction": 0.1}},
            r": at most one lossy codec .*, got quantize and topk",
        ),
        (
            {"quantize": {"bits": 2}},
            r"\.quantize\.bits: must be one of 4, 8, got 2",
        ),
        (
            {"topk": {"fraction": 0}},
            r"\.topk\.fraction: must be in \(0, 1\], got 0",
        ),
        (
            {"randomk": {"fraction": 1.5}},
            r"\.randomk\.fraction: must be in \(0, 1\]",
        ),
        ({"topk": {}}, r"\.topk\.fraction: missing required key"),
        (
            {"zstd": {"level": 0}},
            r"\.zstd\.level: must be an integer in \[1, 22\]",
        ),
        ({}, r": name at least one codec"),
        ({"quantize": 8}, r"\.quantize: must be a table"),
    ],
)
def test_a_bad_compression_table_is_refused_naming_its_key(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"^client\.compression" + message):
        pipeline_of(table)


def test_a_bad_per_client_table_names_the_client() -> None:
    data = {"run": RUN, "clients": {"phone-7": {"compression": {"quantize": {"bits": 5}}}}}
    with pytest.raises(ConfigError, match=r"clients\.phone-7\.compression\.quantize\.bits"):
        parse_config(data)


@pytest.mark.parametrize(
    "sparsifier", [{"topk": {"fraction": 0.1}}, {"randomk": {"fraction": 0.1}}]
)
def test_a_sparsifier_under_secagg_is_refused_naming_client_compression(
    sparsifier: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match=r"^client\.compression, secagg: .* sparsification"):
        parse_config({"run": RUN, "client": {"compression": sparsifier}, "secagg": {}})
    per_client = {"phone-7": {"compression": sparsifier}}
    with pytest.raises(ConfigError, match=r"^clients\.phone-7\.compression, secagg: "):
        parse_config({"run": RUN, "clients": per_client, "secagg": {}})


def test_quantization_under_secagg_is_allowed() -> None:
    table = {"quantize": {"bits": 8}, "zstd": {}}
    config = parse_config({"run": RUN, "client": {"compression": table}, "secagg": {}})
    assert config.secagg is not None


@pytest.mark.parametrize("deployed", [False, True], ids=["simulate", "server"])
def test_the_compressed_example_asks_for_an_eight_bit_uplink(deployed: bool) -> None:
    config = load_config(EXAMPLE / "config-compressed.toml", deployed=deployed)
    ask = config.strategy.client_config.extension(Compression)  # type: ignore[attr-defined]
    assert ask == Compression(pipeline=Pipeline((StochasticQuantization(8, 256), Zstd(3))))
