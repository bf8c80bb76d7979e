"""How long after a restarted server listens are its clients training again?

Runs ``fedhive server`` and 3 ``fedhive client`` processes on 127.0.0.1 (mutual TLS,
the digits-mlp example), kills the server with SIGKILL after a few rounds, restarts it on
the same state folder, and prints, per restart, the seconds from the new server's
"listening" line to (a) every client registered and (b) its first committed round.

    PYTHONPATH=src python benchmarks/restart_reconnect.py [RESTARTS] [DOWN_SECONDS]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from test_deployment import free_port, start_client, start_server, stop_all, write_config

from fedhive.pki.provision import provision

CLIENTS = [f"client-{i:04d}" for i in range(3)]


def lines(state: Path) -> int:
    path = state / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def watch(server: subprocess.Popen[str], events: dict[str, float]) -> None:
    """Note when the server says it listens and when each client registers."""
    assert server.stdout is not None
    for line in server.stdout:
        now = time.monotonic()
        if "listening on port" in line:
            events.setdefault("listening", now)
        for cid in CLIENTS:
            if f"client {cid} registered" in line:
                events.setdefault(cid, now)


def main() -> None:
    restarts = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    down = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        config = write_config(folder, port, rounds=200, clients=3)
        provision(folder / "pki", clients=CLIENTS)
        state = folder / "state"
        events: dict[str, float] = {}
        server = start_server(config, state, folder / "pki" / "server")
        threading.Thread(target=watch, args=(server, events), daemon=True).start()
        clients = [start_client(config, folder / "pki", port, cid) for cid in CLIENTS]
        try:
            for attempt in range(restarts):
                target = lines(state) + 3
                while lines(state) < target:
                    time.sleep(0.05)
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
                time.sleep(down)  # the server stays down a while
                before = lines(state)
                events = {}
                server = start_server(config, state, folder / "pki" / "server")
                threading.Thread(target=watch, args=(server, events), daemon=True).start()
                while lines(state) <= before:
                    time.sleep(0.02)
                trained = time.monotonic()
                registered = max(events[cid] for cid in CLIENTS)
                print(
                    f"restart {attempt + 1}: all registered {registered - events['listening']:.1f}s"
                    f", first round committed {trained - events['listening']:.1f}s"
                    " after listening",
                    flush=True,
                )
        finally:
            stop_all([server, *clients])


if __name__ == "__main__":
    main()
