"""The digits-mlp federation as a real deployment on 127.0.0.1, end to end.

Provisions certificates, starts `fedhive server` and 10 `fedhive client` processes over
mutual TLS, shows the rounds as the server completes them, then prints the final
accuracy and `fedhive audit verify`. Every process it started is stopped on exit,
Ctrl-C included. Run: `make demo-deploy` (or `.venv/bin/python scripts/demo_deploy.py`).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits-mlp"
OUT = ROOT / "runs" / "deploy-demo"
CLIENTS = 10
FEDHIVE = [sys.executable, "-m", "fedhive"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(port: int) -> Path:
    """examples/digits-mlp/deployment.toml, on a free port."""
    shutil.copy(EXAMPLE / "app.py", OUT / "app.py")
    text = (EXAMPLE / "deployment.toml").read_text()
    text = text.replace('address = "127.0.0.1:8443"', f'address = "127.0.0.1:{port}"')
    path = OUT / "config.toml"
    path.write_text(text)
    return path


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "logs").mkdir(parents=True)
    subprocess.run(
        [*FEDHIVE, "provision", "--out", str(OUT / "pki"), "--clients", str(CLIENTS)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    config = write_config(port)
    state = OUT / "state"
    print(f"server on 127.0.0.1:{port}, {CLIENTS} clients; logs in {OUT / 'logs'}", flush=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server = subprocess.Popen(
            [
                *FEDHIVE,
                "server",
                str(config),
                "--state",
                str(state),
                "--certs",
                str(OUT / "pki" / "server"),
            ],
            stderr=(OUT / "logs" / "server.log").open("wb"),
        )
        procs.append(server)
        for i in range(CLIENTS):
            cid = f"client-{i:04d}"
            log = (OUT / "logs" / f"{cid}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        *FEDHIVE,
                        "client",
                        "--server",
                        f"127.0.0.1:{port}",
                        "--certs",
                        str(OUT / "pki" / "clients" / cid),
                        "--client-id",
                        cid,
                        "--app",
                        "app:client",
                        "--config",
                        str(config),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        if server.wait() != 0:
            print("the server failed; see its log", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("interrupted: stopping every process", file=sys.stderr)
        return 130
    finally:
        stop(procs)
    summary = json.loads((state / "summary.json").read_text())
    print(f"final centralised accuracy: {summary['final'].get('accuracy', float('nan')):.4f}")
    print(f"model sha256: {summary['model_sha256']}")
    return subprocess.run([*FEDHIVE, "audit", "verify", str(state)], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
