"""`fedhive server` runs FedBuff over mutual TLS: `fedhive client` processes train on the
version each fetched, the late client's update arrives stale, and a restarted server
resumes after its last recorded version. Interleavings are fixed by ``gated_app``'s gates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_deployment import free_port, start_client, start_server, stop_all

import gated_app
from fedhive.core.serde import weights_from_bytes
from fedhive.pki.provision import provision

TESTS = Path(__file__).resolve().parents[1]
CLIENTS = ["fast-0", "fast-1", "fast-2", "late"]


def write_fedbuff_config(folder: Path, port: int, rounds: int) -> Path:
    gates = folder / "gates"
    gates.mkdir(exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        f"""
[run]
app = "app:build"
rounds = {rounds}
seed = 3

[strategy]
name = "fedbuff"
buffer_size = 1
concurrency = 4
min_available_clients = 4

[app]
gates = {json.dumps(str(gates))}
fast = 3

[server]
app = "app:server"
address = "127.0.0.1:{port}"
min_clients = 4
round_timeout = 30
"""
    )
    return path


def run_deployment(config: Path, pki: Path, state: Path, port: int) -> str:
    """`fedhive server` and its 4 clients until the run ends; the server's output."""
    server = start_server(config, state, pki / "server")
    clients = [start_client(config, pki, port, cid) for cid in CLIENTS]
    try:
        out, _ = server.communicate(timeout=120)
        assert server.returncode == 0, out
        for proc in clients:
            proc.wait(timeout=60)
            assert proc.returncode == 0
    finally:
        gated_app.open_gates(config.parent / "gates")
        stop_all([server, *clients])
    return out


@pytest.mark.slow
def test_fedhive_server_runs_fedbuff_over_mtls_and_resumes(tmp_path: Path) -> None:
    shutil.copy(TESTS / "gated_app.py", tmp_path / "app.py")
    port = free_port()
    pki, state = tmp_path / "pki", tmp_path / "state"
    provision(pki, clients=CLIENTS)
    run_deployment(write_fedbuff_config(tmp_path, port, rounds=6), pki, state, port)
    lines = [json.loads(line) for line in (state / "metrics.jsonl").read_text().splitlines()]
    assert [(line["round"], line["committed"]) for line in lines] == [
        (v, True) for v in range(1, 7)
    ]
    late = next(line for line in lines if "late" in line["fit"]["contributors"])
    assert late["train"]["staleness_max"] >= gated_app.HOLD_FROM

    out = run_deployment(write_fedbuff_config(tmp_path, port, rounds=8), pki, state, port)
    assert "after round 6" in out
    lines = [json.loads(line) for line in (state / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == list(range(1, 9))
    summary = json.loads((state / "summary.json").read_text())
    # the whole run's figures, not only the second process's two versions
    assert (summary["rounds"], summary["committed_rounds"], summary["restarts"]) == (8, 8, 1)
    model = weights_from_bytes((state / "model.safetensors").read_bytes())
    assert np.all(model["w"] == 8.0)  # one +1 update per version, across the restart
