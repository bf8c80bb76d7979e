"""The deployment entry pair as a library: serve_server and serve_client over gRPC on
127.0.0.1 end with the simulation's model, and a second server resumes the run."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from fedhive import run_simulation
from fedhive.core.messages import ClientConfig
from fedhive.deployment import (
    DeployedServer,
    Deployment,
    ServerSection,
    serve_client,
    serve_server,
)
from fedhive.errors import NotEnoughClientsError
from fedhive.strategy import Algorithm
from lstsq_app import build

CLIENTS = ["c0", "c1", "c2"]
STRATEGY = Algorithm(
    client_config=ClientConfig(local_epochs=1, learning_rate=0.1), fraction_fit=1.0
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deployment(port: int, rounds: int = 2, **settings: float) -> Deployment:
    return Deployment(
        strategy=STRATEGY,
        strategy_name="fedavg",
        rounds=rounds,
        seed=4,
        settings=ServerSection(
            address=f"127.0.0.1:{port}", min_clients=len(CLIENTS), round_timeout=30, **settings
        ),
    )


def start_clients(port: int, stop: threading.Event) -> list[threading.Thread]:
    """Each client's own process, as a thread: serve_client until the run is over."""
    app = build(len(CLIENTS))
    threads = [
        threading.Thread(
            target=serve_client,
            args=(app.client,),
            kwargs={"client_id": cid, "server": f"127.0.0.1:{port}", "tls": None, "stop": stop},
        )
        for cid in CLIENTS
    ]
    for thread in threads:
        thread.start()
    return threads


def test_serve_server_and_serve_client_end_with_the_simulations_model(tmp_path: Path) -> None:
    port = free_port()
    stop = threading.Event()
    threads = start_clients(port, stop)
    app = build(len(CLIENTS))
    try:
        served = serve_server(app.server, deployment(port), state_dir=tmp_path, tls=None)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    simulated = run_simulation(app, strategy=STRATEGY, rounds=2, seed=4)
    assert [record.committed for record in served.result.history] == [True, True]
    assert served.result.version == simulated.version
    assert served.totals.committed_rounds == 2
    assert not any(thread.is_alive() for thread in threads)  # told the run was over


def test_a_second_server_on_the_same_state_folder_resumes_the_run(tmp_path: Path) -> None:
    port = free_port()
    stop = threading.Event()
    threads = start_clients(port, stop)
    app = build(len(CLIENTS))
    try:
        with DeployedServer(
            app.server, deployment(port, rounds=1), state_dir=tmp_path, tls=None
        ) as first:
            assert first.resumed_round == 0
            first.wait_for_clients()
            first.run()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    with DeployedServer(app.server, deployment(0), state_dir=tmp_path, tls=None) as server:
        assert server.resumed_round == 1
        assert server.run_id == first.run_id
        assert server.port > 0


def test_too_few_clients_is_a_typed_error_and_the_server_closes(tmp_path: Path) -> None:
    app = build(len(CLIENTS))
    with pytest.raises(NotEnoughClientsError, match="fewer than 3 clients"):
        serve_server(app.server, deployment(0, wait_timeout=0), state_dir=tmp_path / "s", tls=None)
    # closed: the same state folder opens again at once
    with DeployedServer(app.server, deployment(0), state_dir=tmp_path / "s", tls=None) as again:
        assert again.resumed_round == 0
