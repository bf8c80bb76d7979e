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

from fedhive.core._compat import tomllib
from fedhive.pki.provision import provision
from fedhive.simulation.config import parse_config
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
        f'\n[server]\naddress = "127.0.0.1:{port}"\nmin_clients = {clients}\nround_timeout = 120\n'
    )
    path = folder / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_ten_client_processes_over_mtls_match_the_simulation(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    pki = tmp_path / "pki"
    provision(pki, clients=CLIENTS)
    state = tmp_path / "state"
    fedhive = [sys.executable, "-m", "fedhive"]
    server = subprocess.Popen(
        [*fedhive, "server", str(config), "--state", str(state), "--certs", str(pki / "server")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    clients = [
        subprocess.Popen(
            [
                *fedhive,
                "client",
                "--server",
                f"127.0.0.1:{port}",
                "--certs",
                str(pki / "clients" / cid),
                "--client-id",
                cid,
                "--app",
                "app:client",
                "--config",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cid in CLIENTS
    ]
    try:
        out, _ = server.communicate(timeout=400)
        assert server.returncode == 0, out
        for proc in clients:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in [server, *clients]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    summary = json.loads((state / "summary.json").read_text())
    simulated = simulate(parse_config(tomllib.loads(config.read_text())), base_dir=tmp_path)
    assert summary["rounds"] == 3
    assert summary["committed_rounds"] == 3
    assert summary["clients_failed"] == 0
    assert summary["model_sha256"] == simulated.version
