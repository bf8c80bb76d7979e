"""Simulated devices: speeds, durations, the virtual clock, and the ``[devices]`` config."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator, Sequence

import msgspec
import numpy as np
import pytest

import lstsq_app
from fedhive.config import parse_config
from fedhive.config.simulated import Backend, DeviceDistribution, DevicesSection
from fedhive.core.messages import ClientConfig, FitTask
from fedhive.core.serde import model_version
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError
from fedhive.server.asynchronous import AsyncLoop
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.clock import VirtualClockRunner
from fedhive.simulation.devices import DeviceModel, synchronous_round_time
from fedhive.simulation.engine import run_simulation
from fedhive.strategy import Algorithm, Buffered, fedbuff
from fedhive.transport.base import FitOutcome

CLIENTS = [f"c{i}" for i in range(2000)]
ONE_EPOCH = ClientConfig(local_epochs=1)
PARETO = DevicesSection(distribution=DeviceDistribution.PARETO, alpha=1.2)


def durations(model: DeviceModel, clients: Sequence[str] = CLIENTS) -> list[float]:
    return [model.duration(c, ONE_EPOCH, 0) for c in clients]


def test_speeds_depend_only_on_the_seed_and_the_client() -> None:
    model = DeviceModel(PARETO, seed=7)
    forward = [model.speed(c) for c in CLIENTS[:50]]
    backward = [DeviceModel(PARETO, seed=7).speed(c) for c in reversed(CLIENTS[:50])]
    assert forward == backward[::-1]
    assert forward != [DeviceModel(PARETO, seed=8).speed(c) for c in CLIENTS[:50]]
    assert len(set(forward)) == 50


def test_pareto_devices_have_a_heavy_tail_of_slow_ones() -> None:
    times = durations(DeviceModel(PARETO, seed=0))
    median = statistics.median(times)
    assert median == pytest.approx(1.0, rel=0.1)  # the median device: one second per epoch
    assert max(times) / median > 50  # a few devices are very slow
    assert min(times) / median > 0.5  # and none much faster than 2**(-1/alpha)
    lognormal = DevicesSection(distribution=DeviceDistribution.LOGNORMAL, sigma=1.0)
    spread = durations(DeviceModel(lognormal, seed=0))
    assert statistics.median(spread) == pytest.approx(1.0, rel=0.1)
    assert max(spread) / min(spread) > 100
    assert set(durations(DeviceModel(DevicesSection(), seed=0), CLIENTS[:20])) == {1.0}


def test_durations_scale_with_epochs_and_the_seconds_per_epoch() -> None:
    model = DeviceModel(PARETO, seed=3)
    slower = DeviceModel(msgspec.structs.replace(PARETO, seconds_per_epoch=2.5), seed=3)
    for client in CLIENTS[:20]:
        one = model.duration(client, ONE_EPOCH, 0)
        assert model.duration(client, ClientConfig(local_epochs=3), 0) == pytest.approx(3 * one)
        assert slower.duration(client, ONE_EPOCH, 0) == pytest.approx(2.5 * one)


def test_jitter_varies_per_task_reproducibly() -> None:
    model = DeviceModel(DevicesSection(jitter=0.5), seed=1)
    times = [model.duration("c1", ONE_EPOCH, task) for task in range(20)]
    assert len(set(times)) == 20
    assert times == [
        DeviceModel(DevicesSection(jitter=0.5), 1).duration("c1", ONE_EPOCH, t) for t in range(20)
    ]
    assert synchronous_round_time(times) == max(times)
    assert synchronous_round_time([]) == 0.0


class CountingBackend(LocalBackend):
    """A local backend that records the size of every cohort it is given."""

    def __init__(self) -> None:
        super().__init__(lstsq_app.build(8).client.client_fn)
        self.cohorts: list[int] = []

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        self.cohorts.append(len(tasks))
        return super().fit(tasks, model)


def task(client: str, version: str, epochs: int = 1) -> FitTask:
    return FitTask(
        round=0, client_id=client, version=version, seed=1, config=ClientConfig(local_epochs=epochs)
    )


def test_the_virtual_clock_ends_tasks_in_time_order_and_computes_them_in_batches() -> None:
    backend = CountingBackend()
    clock = VirtualClockRunner(
        runner=backend, client_ids=["c0", "c1", "c2"], devices=DeviceModel(DevicesSection(), 0)
    )
    weights = ModelVersion.of(Weights({"w": np.zeros(lstsq_app.DIM)}))
    clock.submit(0, task("c0", "v0", epochs=3), weights)
    clock.submit(1, task("c1", "v0", epochs=1), weights)
    clock.submit(2, task("c2", "v0", epochs=1), weights)
    first = clock.next_finished()
    assert [(f.dispatch, f.clock) for f in first] == [(1, 1.0), (2, 1.0)]  # a tie, in order
    assert backend.cohorts == [3]  # the whole version ran as one cohort
    clock.submit(3, task("c1", "v1", epochs=1), weights)  # starts at t = 1
    assert [(f.dispatch, f.clock) for f in clock.next_finished()] == [(3, 2.0)]
    assert [(f.dispatch, f.clock) for f in clock.next_finished()] == [(0, 3.0)]
    assert clock.next_finished() == []
    assert backend.cohorts == [3, 1]
    clock.close()


class OneAtATime(LocalBackend):
    """A local backend that runs every cohort one task at a time, in reverse order."""

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        for task in reversed(tasks):
            yield from super().fit([task], model)


def test_fedbuff_results_do_not_depend_on_batching() -> None:
    app = lstsq_app.build(10, shared=False)
    devices = DeviceModel(DevicesSection(distribution=DeviceDistribution.LOGNORMAL), seed=3)
    strategy = fedbuff(client_config=ClientConfig(learning_rate=0.05), buffer_size=2, concurrency=6)
    results = []
    for backend in (LocalBackend(app.client.client_fn), OneAtATime(app.client.client_fn)):
        clock = VirtualClockRunner(runner=backend, client_ids=app.client_ids, devices=devices)
        loop = AsyncLoop(strategy=strategy, runner=clock, seed=3)
        results.append(loop.run(app.server.initial_weights, rounds=15))
    batched, single = results
    assert model_version(batched.weights) == model_version(single.weights)
    assert [r.clock for r in batched.history] == [r.clock for r in single.history]
    assert max(r.train["staleness_max"] for r in batched.history) > 0


def test_fedbuff_runs_identically_on_the_process_backend() -> None:
    devices = DevicesSection(distribution=DeviceDistribution.LOGNORMAL, sigma=1.0, jitter=0.2)
    strategy = fedbuff(
        client_config=ClientConfig(local_epochs=2, learning_rate=0.05),
        buffer_size=3,
        concurrency=5,
    )
    app = lstsq_app.build(10, shared=False)
    local = run_simulation(app, strategy=strategy, rounds=12, devices=devices, seed=4)
    other = run_simulation(
        app, strategy=strategy, rounds=12, devices=devices, seed=4, backend=Backend.PROCESS
    )
    assert model_version(local.weights) == model_version(other.weights)
    assert [r.clock for r in local.history] == [r.clock for r in other.history]
    assert [r.fit.contributors for r in local.history] == [
        r.fit.contributors for r in other.history
    ]
    reseeded = run_simulation(app, strategy=strategy, rounds=12, devices=devices, seed=5)
    assert model_version(reseeded.weights) != model_version(local.weights)


def test_synchronous_rounds_last_as_long_as_their_slowest_client() -> None:
    app = lstsq_app.build(10)
    strategy = Algorithm(fraction_fit=0.3, client_config=ClientConfig(local_epochs=2))
    devices = DevicesSection(distribution=DeviceDistribution.PARETO, alpha=1.5, jitter=0.1)
    result = run_simulation(app, strategy=strategy, rounds=4, devices=devices, seed=2)
    model = DeviceModel(devices, seed=2)
    clock = 0.0
    for record in result.history:
        assert len(record.fit.contributors) == 3
        clock += max(
            model.duration(c, strategy.client_config, record.round) for c in record.fit.contributors
        )
        assert record.clock == pytest.approx(clock)
        assert json.loads(json.dumps(record.to_json()))["clock"] == record.clock
    untimed = run_simulation(app, strategy=strategy, rounds=1)
    assert untimed.history[0].clock is None


BASE = {"run": {"app": "app:build", "rounds": 2}, "client": {"local_epochs": 2}}


def test_config_reads_fedbuff_and_devices() -> None:
    config = parse_config(
        {
            **BASE,
            "strategy": {"name": "fedbuff", "buffer_size": 4, "concurrency": 8},
            "devices": {"distribution": "lognormal", "sigma": 1.5, "jitter": 0.1},
        }
    )
    assert isinstance(config.strategy, Algorithm)
    assert isinstance(config.strategy.schedule, Buffered)
    assert (config.strategy.buffered.buffer_size, config.strategy.buffered.concurrency) == (4, 8)
    assert config.strategy.client_config.local_epochs == 2
    assert config.devices == DevicesSection(
        distribution=DeviceDistribution.LOGNORMAL, sigma=1.5, jitter=0.1
    )
    data = json.loads(json.dumps(config.to_json()))
    assert data["strategy"]["name"] == "fedbuff"
    assert data["strategy"]["buffer_size"] == 4
    assert data["strategy"]["fraction_fit"] == 1.0  # the base's fields, flattened
    assert data["client"]["local_epochs"] == 2
    assert data["devices"]["distribution"] == "lognormal"
    assert parse_config(BASE).devices is None


def test_scaffold_config_to_json_flattens_its_base() -> None:
    config = parse_config({**BASE, "strategy": {"name": "scaffold", "fraction_fit": 0.5}})
    data = json.loads(json.dumps(config.to_json()))
    assert data["strategy"]["fraction_fit"] == 0.5
    assert "base" not in data["strategy"]
    assert data["client"]["local_epochs"] == 2


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ({"distribution": "zipf"}, r"devices\.distribution: must be one of constant, lognormal"),
        ({"alpha": 0}, r"devices\.alpha: must be a finite number > 0"),
        ({"sigma": -1.0}, r"devices\.sigma: must be a finite number >= 0"),
        ({"seconds_per_epoch": 0}, r"devices\.seconds_per_epoch: must be a finite number > 0"),
        ({"speed": 2}, r"devices\.speed: unknown key"),
        ({"jitter": "a lot"}, r"devices\.jitter: must be a finite number >= 0, got 'a lot'"),
    ],
)
def test_devices_errors_name_the_key(devices: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "devices": devices})


def test_an_over_selected_round_closes_at_its_quorum_in_simulated_time_order() -> None:
    app = lstsq_app.build(8)
    strategy = Algorithm(fraction_fit=0.75, over_selection=1 / 3)  # 8 selected, quorum 6
    devices = DevicesSection(distribution=DeviceDistribution.LOGNORMAL, sigma=1.0, jitter=0.3)
    result = run_simulation(app, strategy=strategy, rounds=2, devices=devices, seed=4)
    model = DeviceModel(devices, seed=4)
    clock = 0.0
    for record in result.history:
        assert record.fit.selected == 8
        seconds = {c: model.duration(c, ClientConfig(), record.round) for c in app.client_ids}
        by_time = sorted(app.client_ids, key=seconds.__getitem__)
        assert sorted(record.fit.contributors) == sorted(by_time[:6])
        assert dict(record.fit.failures) == {"transport:round_closed": 2}
        clock += seconds[by_time[5]]  # the round closed when its sixth result arrived
        assert record.clock == pytest.approx(clock)
