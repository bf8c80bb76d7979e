"""A real deployment on 127.0.0.1: `fedhive server` and 10 `fedhive client` processes
over mutual TLS end with the same model as `fedhive simulate` of the same clients."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fedhive.config import parse_config
from fedhive.core._compat import tomllib
from fedhive.pki.provision import provision
from fedhive.simulation.engine import simulate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-mlp"
CLIENTS = [f"client-{i:04d}" for i in range(10)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, port: int, *, rounds: int = 3, clients: int = 10) -> Path:
    shutil.copy(EXAMPLE / "app.py", folder / "app.py")
    text = (EXAMPLE / "config.toml").read_text()
    text = text.replace("rounds = 40", f"rounds = {rounds}")
    text = text.replace("num_clients = 100", f"num_clients = {clients}")
    text = text.replace("min_fit_clients = 10", f"min_fit_clients = {min(clients, 10)}")
    text = text.replace("federated_every = 10", "federated_every = 0")
    text += (
        f'\n[server]\napp = "app:server"\naddress = "127.0.0.1:{port}"\n'
        f"min_clients = {clients}\nround_timeout = 120\n"
    )
    path = folder / "config.toml"
    path.write_text(text)
    return path


FEDHIVE = [sys.executable, "-m", "fedhive"]


def start_server(config: Path, state: Path, certs: Path) -> subprocess.Popen[str]:
    """`fedhive server` as a process; its output is collected for the test's messages."""
    return subprocess.Popen(
        [*FEDHIVE, "server", str(config), "--state", str(state), "--certs", str(certs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_client(config: Path, pki: Path, port: int, client_id: str) -> subprocess.Popen[str]:
    """`fedhive client` as a process, with its provisioned certificates; its log goes to
    a file beside the config (a pipe nobody reads could fill and block it)."""
    log = (config.parent / f"{client_id}.log").open("w")
    try:
        return subprocess.Popen(
            [
                *FEDHIVE,
                "client",
                "--server",
                f"127.0.0.1:{port}",
                "--certs",
                str(pki / "clients" / client_id),
                "--client-id",
                client_id,
                "--app",
                "app:client",
                "--config",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
    finally:
        log.close()  # the child has its own copy of the descriptor


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    """Kill whatever still runs and close the pipes the test opened."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_ten_client_processes_over_mtls_match_the_simulation(tmp_path: Path) -> None:
    deploy_and_compare(tmp_path)


@pytest.mark.slow
def test_secure_aggregation_over_mtls_matches_the_simulation(tmp_path: Path) -> None:
    # Test-sized SecAgg+ settings for 10 clients (weak targets: 2^-5).
    deploy_and_compare(
        tmp_path,
        "\n[secagg]\ndropout_fraction = 0.1\nsecurity_bits = 5\ncorrectness_bits = 5\n"
        "clip_range = 1.0\n",
    )


def deploy(tmp_path: Path, config: Path, port: int) -> Path:
    """Provision, then run ``config`` as `fedhive server` and 10 `fedhive client`
    processes to the end; the server's state folder."""
    pki = tmp_path / "pki"
    provision(pki, clients=CLIENTS)
    state = tmp_path / "state"
    server = start_server(config, state, pki / "server")
    clients = [start_client(config, pki, port, cid) for cid in CLIENTS]
    try:
        out, _ = server.communicate(timeout=400)
        assert server.returncode == 0, out
        for proc in clients:
            proc.wait(timeout=60)
            assert proc.returncode == 0
    finally:
        stop_all([server, *clients])
    return state


def deploy_and_compare(tmp_path: Path, extra: str = "") -> None:
    """Run the digits-mlp config as server and 10 client processes; the final model
    must be the simulation's, bit for bit."""
    port = free_port()
    config = write_config(tmp_path, port)
    config.write_text(config.read_text() + extra)
    state = deploy(tmp_path, config, port)
    summary = json.loads((state / "summary.json").read_text())
    simulated = simulate(parse_config(tomllib.loads(config.read_text())), base_dir=tmp_path)
    assert summary["rounds"] == 3
    assert summary["committed_rounds"] == 3
    assert summary["clients_failed"] == 0
    assert summary["model_sha256"] == simulated.version
