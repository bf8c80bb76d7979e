"""The Ray backend: its config, the same model as the local backend, a real two-node
cluster started on this machine, and actors that crash.

The tests that start Ray are slow (2-5 s for Ray itself, plus an interpreter per actor)
and kept small: 10 digits-mlp clients, 2 rounds, 2 one-CPU actors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fedhive
from fedhive.config import parse_config
from fedhive.config.simulated import Backend, SimulationSection
from fedhive.core._compat import tomllib
from fedhive.core.decode import decode
from fedhive.core.failures import Stage
from fedhive.core.messages import ClientConfig, EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.serde import record_from_bytes
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError
from fedhive.server.orchestrator import RoundLoop
from fedhive.simulation.app import AppSpec
from fedhive.simulation.backends.ray import RayActor, RayBackend, run_task
from fedhive.simulation.engine import run_simulation, simulate
from fedhive.simulation.wire import outcome_from_bytes, task_bytes
from fedhive.strategy.algorithm import Algorithm
from fedhive.transport.inprocess import InProcessTransport

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp"
TESTS = Path(__file__).resolve().parents[1]
SRC = Path(fedhive.__file__).resolve().parents[1]
RAY_BIN = Path(sys.executable).with_name("ray")
CONFIG = ClientConfig(local_epochs=1, learning_rate=0.1)


def digits_config(backend: str, **simulation: Any) -> dict[str, Any]:
    """digits-mlp cut to 10 clients and 2 rounds, federated evaluation every round."""
    data = tomllib.loads((EXAMPLE / "config.toml").read_text())
    data["run"]["rounds"] = 2
    data["app"]["num_clients"] = 10
    data["strategy"]["min_fit_clients"] = 2
    data["evaluation"]["federated_every"] = 1
    data["simulation"] = {"backend": backend, "workers": 2, **simulation}
    return data


def run_digits(backend: str, address: str | None = None, **simulation: Any) -> str:
    """The final model's version; every client of every round must have succeeded (a
    lost task still commits a round, on a different model)."""
    if address is not None:
        simulation["ray_address"] = address
    result = simulate(parse_config(digits_config(backend, **simulation)), base_dir=EXAMPLE)
    outcomes = [
        (r.fit.succeeded, dict(r.fit.failures), r.evaluate.succeeded) for r in result.history
    ]
    assert outcomes == [(10, {}, 3)] * 2
    return result.version


@pytest.fixture(scope="module")
def local_version() -> str:
    return run_digits("local")


# --- config (no Ray started) ---------------------------------------------------------


def test_backend_ray_parses_with_and_without_an_address() -> None:
    config = parse_config(digits_config("ray", ray_address="127.0.0.1:6379"))
    assert config.simulation.backend == Backend.RAY
    assert config.simulation.ray_address == "127.0.0.1:6379"
    assert parse_config(digits_config("ray")).simulation.ray_address is None


@pytest.mark.parametrize(("backend", "address"), [("local", "auto"), ("process", "auto")])
def test_ray_address_is_refused_without_the_ray_backend(backend: str, address: str) -> None:
    with pytest.raises(ConfigError, match='ray_address: only with backend = "ray"'):
        parse_config(digits_config(backend, ray_address=address))


def test_an_empty_ray_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="ray_address: must not be empty"):
        decode(SimulationSection, {"backend": "ray", "ray_address": " "}, "simulation")


def test_another_backend_on_the_command_line_drops_the_cluster_address() -> None:
    config = parse_config(digits_config("ray", ray_address="auto"))
    local = config.with_overrides(backend="local").simulation
    assert (local.backend, local.ray_address) == (Backend.LOCAL, None)
    assert config.with_overrides(backend="ray").simulation.ray_address == "auto"


def test_a_missing_ray_is_a_config_error_that_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'fedhive\[ray\]'"):
        RayBackend(spec=AppSpec("fake_app:build", TESTS))
    with pytest.raises(ConfigError, match=r"pip install 'fedhive\[ray\]'"):
        run_digits("ray")


def test_run_simulation_refuses_the_ray_backend_it_cannot_build() -> None:
    app = AppSpec("fake_app:build", TESTS).build({"clients": ["good-0"]}, 0)
    with pytest.raises(ConfigError, match="run it from a config"):
        run_simulation(app, strategy=Algorithm(), rounds=1, backend=Backend.RAY)


def test_attacks_are_refused_on_the_ray_backend() -> None:
    data = digits_config("ray")
    data["attack"] = {"kind": "sign_flip", "fraction": 0.2}
    with pytest.raises(ConfigError, match=r'not with simulation\.backend = "ray"'):
        simulate(parse_config(data), base_dir=EXAMPLE)


# --- an actor's code, in this process (what a Ray worker runs) -----------------------


def test_an_actor_fetches_each_version_once_and_its_tasks_cross_as_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    spec = AppSpec("fake_app:build", TESTS)
    app = spec.build({"clients": ["good-0"]}, 0)
    first = ModelVersion.of(app.server.initial_weights)
    second = ModelVersion.of(Weights({k: v + 1 for k, v in first.weights.items()}))
    store = {"ref-1": first.data, "ref-2": second.data}
    fetched: list[str] = []

    def get(ref: str) -> bytes:
        fetched.append(ref)
        return store[ref]

    monkeypatch.setattr(ray, "get", get)
    actor = RayActor(spec.spec, str(spec.base_dir), json.dumps({"clients": ["good-0"]}), 0)

    def fit(model: ModelVersion, ref: str, state: bytes | None) -> tuple[FitReply, bytes | None]:
        task = FitTask(round=1, client_id="good-0", version=model.digest, seed=1, config=CONFIG)
        ((header, payload, record),) = actor.run(
            model.digest, [ref], [task_bytes(task)], ["good-0"], [state]
        )
        reply = outcome_from_bytes(header, payload)
        assert isinstance(reply, FitReply)
        return reply, record

    reply, state = fit(first, "ref-1", None)
    assert state is not None
    assert record_from_bytes(state) == {"calls": 1}
    reply, state = fit(first, "ref-1", state)  # the same version: not fetched again
    assert state is not None
    assert record_from_bytes(state) == {"calls": 2}
    assert reply.metrics["calls"] == 2.0
    fit(second, "ref-2", state)
    assert fetched == ["ref-1", "ref-2"]


def test_a_client_factory_that_raises_fails_its_task_alone() -> None:
    spec = AppSpec("fake_app:build", TESTS)
    app = spec.build({"clients": ["good-0"]}, 0)
    model = ModelVersion.of(app.server.initial_weights)

    def broken(client_id: str) -> Any:
        raise RuntimeError(f"no client {client_id}")

    broken_app = dataclasses.replace(app, client=dataclasses.replace(app.client, client_fn=broken))
    task = EvaluateTask(round=2, client_id="x", version=model.digest, seed=1, config=CONFIG)
    header, payload, state = run_task(broken_app, model.weights, "x", task_bytes(task), None)
    failure = outcome_from_bytes(header, payload)
    assert isinstance(failure, Failure)
    assert (failure.client_id, failure.round, failure.stage) == ("x", 2, Stage.CLIENT_FN)
    assert state is None


# --- a local Ray ---------------------------------------------------------------------


@pytest.mark.slow
def test_ray_gives_the_local_model_bit_for_bit_and_puts_each_version_once(
    local_version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    puts: list[int] = []
    put = ray.put

    def counting(value: Any, **kwargs: Any) -> Any:
        puts.append(len(value))
        return put(value, **kwargs)

    monkeypatch.setattr(ray, "put", counting)
    assert run_digits("ray") == local_version
    # 10 clients fit and evaluate in each of 2 rounds, on 3 versions (initial, after
    # round 1, after round 2): one put each, whatever the number of clients.
    assert len(puts) == 3
    assert len(set(puts)) == 1  # the same model size each time: the model, nothing else
    assert not ray.is_initialized()  # the Ray the run started is shut down


@pytest.mark.slow
def test_faulty_and_crashing_clients_fail_alone_and_a_dead_actor_is_replaced() -> None:
    clients = ["good-0", "good-1", "good-2", "shape-0", "raise-0", "crash-0"]
    spec = AppSpec("fake_app:build", TESTS)
    app = spec.build({"clients": clients}, 0)
    runner = RayBackend(spec=spec, params={"clients": clients}, seed=0, workers=2)
    loop = RoundLoop(
        strategy=Algorithm(fraction_evaluate=1.0),
        transport=InProcessTransport(client_ids=clients, runner=runner),
        seed=3,
        evaluate_fn=app.server.evaluate_fn,
        federated_every=1,
    )
    try:
        result = loop.run(app.server.initial_weights, 2)
    finally:
        loop.transport.close()
    for record in result.history:
        assert record.committed
        assert record.fit.failures["verify:shape_mismatch"] == 1
        assert record.fit.failures["fit:client_error"] == 1
        assert record.fit.failures["transport:transport"] >= 1  # crash-0, and its actor's queue
        assert 1 <= record.fit.succeeded <= 3
    # state travelled with the tasks: a client that ran both rounds counted 2 calls
    assert result.history[1].train["calls"] > 1.0


# --- a real two-node cluster on this machine -----------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_started(log: Path, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a `ray start --block` and every process of its session (raylet, GCS, workers):
    politely, then by force, until none is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    deadline = time.monotonic() + 15
    while (members := _session_members(proc.pid)) and time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    proc.wait(timeout=5)


def _session_members(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


def cluster_env() -> dict[str, str]:
    """The environment of the cluster's nodes and its driver: no token authentication,
    no usage statistics, fedhive importable."""
    return dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    )


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[str]:
    """A head node and a second node of one CPU each, as `ray start` starts them on two
    machines; yields the head's address. Token authentication is off: the cluster
    listens on 127.0.0.1 only and lives for one test."""
    env = cluster_env()
    temp = tempfile.mkdtemp(prefix="fh-ray-", dir="/tmp")  # AF_UNIX paths: 107 bytes at most
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block"]
    head = [
        "--head",
        f"--port={port}",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-port={_free_port()}",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in (("head", head), ("node", [f"--address={address}"])):
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [str(RAY_BIN), "start", *args, *common],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,  # its own session: stopped as a whole
                    )
                )
            _wait_started(log, procs[-1])
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        leaked = [pid for proc in procs for pid in _session_members(proc.pid)]
        shutil.rmtree(temp, ignore_errors=True)
        assert not leaked, f"ray processes left running: {leaked}"


DRIVER = """
import json, logging, sys
sys.path[:0] = sys.argv[1:3]
import conftest  # the pinned kernels, as in this process
from test_simulation_ray import run_digits

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
print(json.dumps({"version": run_digits(*sys.argv[3:])}))
"""


def drive(*args: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Run ``run_digits(*args)`` in a fresh interpreter, as a user's driver process would
    (a Ray session this test process had would leave state behind: Ray sets
    RAY_AUTH_MODE in os.environ and keeps its auth mode in the process); returns the
    model version and the Ray backend's log lines."""
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(TESTS), here, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    (result,) = (line for line in lines if line.startswith('{"version"'))
    return json.loads(result)["version"], [line for line in lines if "ray backend" in line]


@pytest.mark.slow
def test_a_two_node_cluster_runs_one_actor_per_node_and_gives_the_local_model(
    two_node_cluster: str, local_version: str
) -> None:
    env = cluster_env()
    version, logged = drive("ray", two_node_cluster, env=env)
    assert version == local_version
    # two actors of one CPU each on two one-CPU nodes: one on each, and the run said so
    assert logged == ["ray backend: 2 actors on 2 node(s)"]
    # without ray_address, a local Ray of its own: not the cluster `ray start` left
    # running here, which Ray's own default would join (found in /tmp/ray or RAY_ADDRESS)
    version, logged = drive("ray", env={**env, "RAY_ADDRESS": two_node_cluster})
    assert version == local_version
    assert logged == ["ray backend: 2 actors on 1 node(s)"]
