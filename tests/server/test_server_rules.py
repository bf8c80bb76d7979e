"""The cross-object safety rules: refused alike by the Python API and the deployment."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fedhive import run_simulation
from fedhive.compression import Pipeline, RandomK, StochasticQuantization, TopK, Zstd
from fedhive.config import parse_config
from fedhive.core.extensions import Compression, Weighting
from fedhive.core.messages import ClientConfig
from fedhive.deployment import DeployedServer, Deployment, ServerApp
from fedhive.errors import ConfigError
from fedhive.server.rules import check_run
from fedhive.server.secure import SecureAggregation
from fedhive.strategy import Algorithm
from fedhive.strategy.compose import WeightedMean
from fedhive.strategy.fedbuff import Buffered
from fedhive.strategy.private import DifferentialPrivacy, DpMode
from fedhive.strategy.robust import CoordinateMedian, NormBound
from lstsq_app import build

CLIENT = ClientConfig(local_epochs=1, learning_rate=0.1)
FEDAVG = Algorithm(client_config=CLIENT)
# Settings four clients can run (so a missing check shows as a run that goes ahead).
UNIFORM = SecureAggregation(
    weighting=Weighting.UNIFORM,
    clip_range=4.0,
    dropout_fraction=0.0,
    corruption_fraction=0.0,
    security_bits=20,
    correctness_bits=2,
)
EXAMPLES = dataclasses.replace(UNIFORM, weighting=Weighting.EXAMPLES)


def dp(mode: DpMode, *, noise_seed: int | None = None) -> Algorithm:
    private = DifferentialPrivacy(mode=mode, noise_seed=noise_seed)
    return dataclasses.replace(FEDAVG, transforms=(*FEDAVG.transforms, private))


def fedbuff(**settings: Any) -> Algorithm:
    return dataclasses.replace(FEDAVG, schedule=Buffered(**settings))


ARGS = ("strategy", "secure", "federated_every", "names")  # names: what the error names
REFUSED_EVERYWHERE: list[tuple[Any, SecureAggregation | None, int, str]] = [
    (dp(DpMode.CENTRAL), UNIFORM, 0, r"privacy\.mode.*secagg|secagg.*privacy\.mode"),
    (dp(DpMode.DISTRIBUTED), EXAMPLES, 0, r"secagg\.weighting"),
    (fedbuff(buffer_size=2), UNIFORM, 0, r"secagg.*fedbuff"),
    (fedbuff(buffer_size=2), None, 1, r"evaluation\.federated_every.*fedbuff"),
    (
        dataclasses.replace(FEDAVG, aggregator=CoordinateMedian()),
        UNIFORM,
        0,
        r"strategy\.aggregator.*secagg",
    ),
    (
        dataclasses.replace(FEDAVG, aggregator=NormBound(inner=WeightedMean(), max_norm=1.0)),
        UNIFORM,
        0,
        r"strategy\.aggregator.*secagg",
    ),
]
IDS = [
    "central-dp-secagg",
    "distributed-dp-examples",
    "fedbuff-secagg",
    "fedbuff-federated",
    "median-secagg",
    "norm-bound-secagg",
]


@pytest.mark.parametrize(
    ("strategy", "secure", "federated_every", "names"), REFUSED_EVERYWHERE, ids=IDS
)
def test_the_python_api_refuses_what_the_config_refuses(
    strategy: Any, secure: SecureAggregation | None, federated_every: int, names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        run_simulation(
            build(4), strategy=strategy, rounds=1, secure=secure, federated_every=federated_every
        )


def deploy(strategy: Any, state_dir: Path, **deployment: Any) -> DeployedServer:
    """A deployment's server on any free loopback port, without TLS."""
    return DeployedServer(
        ServerApp(initial_weights=build(4).server.initial_weights),
        Deployment(strategy=strategy, strategy_name="x", rounds=1, **deployment),
        state_dir=state_dir,
        tls=None,
        address="127.0.0.1:0",
    )


@pytest.mark.parametrize(
    ("strategy", "secure", "federated_every", "names"), REFUSED_EVERYWHERE, ids=IDS
)
def test_the_deployment_refuses_before_it_serves(
    strategy: Any,
    secure: SecureAggregation | None,
    federated_every: int,
    names: str,
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with pytest.raises(ConfigError, match=names):
        deploy(strategy, state, secure=secure, federated_every=federated_every)
    assert not state.exists()  # refused before a port or a store was opened


def test_a_deployment_refuses_seeded_dp_noise_from_any_entry_point(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"privacy\.secure_noise"):
        deploy(dp(DpMode.CENTRAL, noise_seed=7), tmp_path / "state")
    with pytest.raises(ConfigError, match=r"privacy\.secure_noise"):
        check_run(dp(DpMode.DISTRIBUTED, noise_seed=0), deployed=True)


def test_a_deployed_config_draws_dp_noise_from_a_csprng() -> None:
    data = {"run": {"app": "x:y", "rounds": 1, "seed": 3}, "privacy": {}}
    deployed = parse_config(data, deployed=True).strategy
    simulated = parse_config(data).strategy
    assert isinstance(deployed, Algorithm)
    assert isinstance(simulated, Algorithm)
    assert deployed.privacy is not None
    assert simulated.privacy is not None
    assert deployed.privacy.noise_seed is None
    assert simulated.privacy.noise_seed == 3  # a simulation stays reproducible


def test_a_simulation_may_seed_its_dp_noise_and_pass_the_checks() -> None:
    check_run(dp(DpMode.CENTRAL, noise_seed=0))
    check_run(dp(DpMode.DISTRIBUTED, noise_seed=0), secure=UNIFORM)
    check_run(fedbuff())
    check_run(FEDAVG, secure=EXAMPLES, federated_every=2, deployed=True)


def compressed(*stages: Any) -> Algorithm:
    ask = Compression(pipeline=Pipeline(stages))
    return dataclasses.replace(FEDAVG, client_config=CLIENT.with_extensions(ask))


@pytest.mark.parametrize(
    "sparsifier", [TopK(0.1), RandomK(0.1), RandomK(0.1, error_feedback=True)], ids=repr
)
def test_sparsifying_compression_under_secagg_is_refused_everywhere(
    sparsifier: Any, tmp_path: Path
) -> None:
    strategy = compressed(sparsifier, Zstd())
    names = r"client\.compression.*secagg.*masks are dense"
    with pytest.raises(ConfigError, match=names):
        check_run(strategy, secure=UNIFORM)
    with pytest.raises(ConfigError, match=names):
        run_simulation(build(4), strategy=strategy, rounds=1, secure=UNIFORM)
    with pytest.raises(ConfigError, match=names):
        deploy(strategy, tmp_path / "state", secure=UNIFORM)
    per_client = dataclasses.replace(
        FEDAVG,
        per_client={"c1": CLIENT.with_extensions(Compression(pipeline=Pipeline((sparsifier,))))},
    )
    with pytest.raises(ConfigError, match=r"^clients\.c1\.compression, secagg:.*masks are dense"):
        check_run(per_client, secure=UNIFORM)
    check_run(strategy)  # without secure aggregation a sparsifier is fine


def test_quantization_and_zstd_under_secagg_pass_the_checks() -> None:
    check_run(compressed(StochasticQuantization(bits=8), Zstd()), secure=UNIFORM)
    check_run(compressed(Zstd()), secure=EXAMPLES, deployed=True)
