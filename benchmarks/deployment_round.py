"""One FedAvg round over the real gRPC transport (mutual TLS, signed results) on 127.0.0.1.

For each cohort size C, certificates for C clients are provisioned, a server is started
in its own process (so its CPU time and peak RSS are its own), and C clients connect from
this process: each has its own ``GrpcLink`` (its own TLS connection and certificate), and
a thread pool of ``--threads`` threads drives them with ``fedhive.client.runner.serve``
(``max_tasks=1``). All C clients register before the round, so C tasks are published at
once; at most ``--threads`` of them are in flight at a time (the rest queue here), and
the server's gRPC pool has ``max(32, min(C, 128))`` workers. The clients train nothing
(fit adds 0.01 to the weights): the round measures the framework and the wire. The
server and the load generator share the machine's cores: on 2 cores C=500 is CPU-bound
(both processes busy) and the three sizes take 30-40 s in all.

    python benchmarks/deployment_round.py [--clients 10 100 500] [--params 1000000]

Prints one JSON object per C:

- ``clients``, ``params``: C and the number of float32 parameters (one tensor).
- ``model_bytes``: the raw size of the parameters (``params * 4``).
- ``payload_bytes_down`` / ``payload_bytes_up``: per client, the safetensors bytes of the
  model it downloads and of the update it uploads (what the protocol carries).
- ``wire_bytes_per_client_down`` / ``_up``: per client, TCP payload bytes (TLS records:
  HTTP/2 framing, protobuf, polls and all) the server sent / received during the round,
  summed over its sockets from the kernel's ``tcp_info`` (``ss -ti``); no IP/TCP headers.
  Null without ``ss``. (``/proc/<pid>/io`` cannot serve: it does not count gRPC's
  ``sendmsg``/``recvmsg``.)
- ``wire_ratio_down`` / ``wire_ratio_up``: wire bytes per client / ``model_bytes``.
- ``round_latency_s``: server wall time of ``RoundLoop.run`` for one round (select,
  sign and publish the model, collect and verify C uploads, aggregate, commit).
- ``latency_per_client_ms``: ``round_latency_s / C``.
- ``server_cpu_s``: the server process's CPU time (user + sys, all threads) in the round.
- ``server_peak_rss_mb``: the server process's peak RSS (``ru_maxrss``).
- ``loadgen_cpu_s``: this process's CPU time while its clients ran (they share the cores).
- ``raw_copy_s``: reference, same run: serializing the model and SHA-256 over it C times
  in-process, the least a server must do per client; ``ratio`` = latency / raw_copy_s.
- ``provision_s``: provisioning the CA, server and C client certificates (not in latency).
- ``succeeded`` / ``failed``: the round record's fit outcomes (``failures`` by kind, if
  any); ``committed``: the round committed; ``served``: tasks the clients completed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.serde import weights_to_bytes
from fedhive.core.weights import Weights

SERVER_WORKERS_MAX = 128
ROUND_TIMEOUT_S = 600.0
REGISTER_TIMEOUT_S = 120.0


class AddClient:
    """Trains nothing: its fit moves every weight by 0.01 and reports one example."""

    def fit(self, weights: Weights, config: ClientConfig, context: Any) -> FitResult:
        moved = {k: v + np.float32(0.01) for k, v in weights.items()}
        return FitResult(weights=Weights(moved), num_examples=1)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def model(params: int) -> Weights:
    """The benchmark model: ``params`` float32 values in one tensor, seeded."""
    return Weights({"w": np.random.default_rng(0).standard_normal(params, dtype=np.float32)})


def raise_fd_limit() -> None:
    """Raise the soft open-file limit to the hard one (one socket per client)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def socket_bytes(port: int) -> tuple[int, int]:
    """(sent, received) TCP payload bytes over the established sockets of ``port``;
    (-1, -1) where ``ss`` (iproute2) is not available."""
    try:
        out = subprocess.run(
            ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return -1, -1
    sent = sum(int(n) for n in re.findall(r"\bbytes_sent:(\d+)", out))
    received = sum(int(n) for n in re.findall(r"\bbytes_received:(\d+)", out))
    return sent, received


def mtls_server(pki: Path, clients: int, **options: Any) -> Any:
    """The benchmark's server: mutual TLS with signed results from ``pki/server``, a
    round timeout of ``ROUND_TIMEOUT_S``, ``max(32, min(C, 128))`` workers (``options``:
    more ``GrpcServerTransport`` arguments)."""
    from fedhive.pki.revocation import RevocationList
    from fedhive.pki.tls import TLSConfig
    from fedhive.transport.grpc.security import (
        CertificateIdentity,
        Signatures,
        server_credentials,
    )
    from fedhive.transport.grpc.server import GrpcServerTransport

    tls = TLSConfig.from_dir(pki / "server")
    return GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=server_credentials(tls),
        identify=CertificateIdentity(RevocationList.from_dir(pki / "server")),
        signatures=Signatures(tls),
        round_timeout=ROUND_TIMEOUT_S,
        workers=max(32, min(clients, SERVER_WORKERS_MAX)),
        **options,
    )


def mtls_link(pki: Path, port: int, index: int) -> Any:
    """Client ``client-<index>``'s own link (its certificate, its TLS connection)."""
    from fedhive.pki.tls import TLSConfig
    from fedhive.transport.grpc.connection import GrpcLink
    from fedhive.transport.grpc.security import ClientSignatures, channel_credentials

    tls = TLSConfig.from_dir(pki / "clients" / f"client-{index:04d}")
    return GrpcLink(
        f"127.0.0.1:{port}",
        client_id=f"client-{index:04d}",
        credentials=channel_credentials(tls),
        server_name="localhost",
        signatures=ClientSignatures(tls),
        timeout=ROUND_TIMEOUT_S,
    )


def serve_round(pki: Path, clients: int, params: int) -> None:
    """The server process: print the port, wait for the clients, run one round, report."""
    from fedhive.server.orchestrator import RoundLoop
    from fedhive.strategy import fedavg

    raise_fd_limit()
    transport = mtls_server(pki, clients)
    try:
        print(json.dumps({"port": transport.port}), flush=True)
        if not transport.wait_for_clients(clients, timeout=REGISTER_TIMEOUT_S):
            raise SystemExit(f"server: only {len(transport.client_ids())} of {clients} came")
        weights = model(params)
        loop = RoundLoop(
            strategy=fedavg(min_available_clients=clients), transport=transport, seed=0
        )
        sent0, received0 = socket_bytes(transport.port)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        record = loop.run(weights, 1).history[0]
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sent1, received1 = socket_bytes(transport.port)
        update = weights_to_bytes(Weights({"w": np.zeros(params, np.float32)}))
        report = {
            "round_latency_s": wall,
            "server_cpu_s": cpu,
            "server_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "payload_bytes_down": len(weights_to_bytes(weights)),
            "payload_bytes_up": len(update),
            "wire_down": sent1 - sent0 if sent0 >= 0 else None,
            "wire_up": received1 - received0 if sent0 >= 0 else None,
            "succeeded": record.fit.succeeded,
            "failed": record.fit.failed,
            "failures": dict(record.fit.failures),
            "committed": record.committed,
        }
        print(json.dumps(report), flush=True)
    finally:
        transport.close()


def raw_copy_seconds(params: int, clients: int) -> float:
    """Reference: serialize the model and hash it ``clients`` times, in-process."""
    weights = model(params)
    start = time.perf_counter()
    for _ in range(clients):
        hashlib.sha256(weights_to_bytes(weights)).digest()
    return time.perf_counter() - start


def run_clients(
    pki: Path, port: int, pool: ThreadPoolExecutor, links: list[Any], stop: threading.Event
) -> list[Future[int]]:
    """Connect and register every client (into ``links``), then serve them on ``pool``."""
    from fedhive.client.runner import serve

    for index in range(len(links)):
        links[index] = mtls_link(pki, port, index)
    # Register all first: only `threads` clients serve at a time, and the server waits
    # for all C before it publishes the round.
    list(pool.map(lambda link: link.register(), links))
    return [pool.submit(serve, link, AddClient(), stop=stop, max_tasks=1) for link in links]


def measure(clients: int, params: int, threads: int) -> dict[str, Any]:
    """Provision, start the server process, run its round with C clients, report."""
    from fedhive.pki.provision import provision

    with tempfile.TemporaryDirectory(prefix="fedhive-bench-") as tmp:
        pki = Path(tmp) / "pki"
        start = time.perf_counter()
        provision(pki, clients=clients)
        provision_s = time.perf_counter() - start
        raw_copy_s = raw_copy_seconds(params, clients)
        command = [sys.executable, __file__, "--serve", str(pki)]
        command += ["--clients", str(clients), "--params", str(params)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        stop = threading.Event()
        links: list[Any] = [None] * clients
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="client")
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            if not first:
                raise RuntimeError(f"server exited before serving (rc {server.wait()})")
            port = json.loads(first)["port"]
            cpu0 = time.process_time()
            futures = run_clients(pki, port, pool, links, stop)
            out, _ = server.communicate(timeout=ROUND_TIMEOUT_S + REGISTER_TIMEOUT_S)
            if server.returncode != 0 or not out.strip():
                raise RuntimeError(f"server failed (rc {server.returncode})")
            served = sum(f.result(timeout=30) for f in futures)
            loadgen_cpu_s = time.process_time() - cpu0
            report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        finally:
            stop.set()
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            pool.shutdown(wait=True, cancel_futures=True)
            for link in links:
                if link is not None:
                    link.close()
    raw = params * 4
    latency = report["round_latency_s"]
    down, up = (
        (report["wire_down"] / clients, report["wire_up"] / clients)
        if report["wire_down"] is not None
        else (None, None)
    )
    row = {
        "clients": clients,
        "params": params,
        "model_bytes": raw,
        "payload_bytes_down": report["payload_bytes_down"],
        "payload_bytes_up": report["payload_bytes_up"],
        "wire_bytes_per_client_down": None if down is None else round(down),
        "wire_bytes_per_client_up": None if up is None else round(up),
        "wire_ratio_down": None if down is None else round(down / raw, 4),
        "wire_ratio_up": None if up is None else round(up / raw, 4),
        "round_latency_s": round(latency, 3),
        "latency_per_client_ms": round(1000 * latency / clients, 2),
        "server_cpu_s": round(report["server_cpu_s"], 3),
        "server_peak_rss_mb": round(report["server_peak_rss_mb"], 1),
        "loadgen_cpu_s": round(loadgen_cpu_s, 3),
        "raw_copy_s": round(raw_copy_s, 4),
        "ratio": round(latency / raw_copy_s, 2),
        "provision_s": round(provision_s, 3),
        "succeeded": report["succeeded"],
        "failed": report["failed"],
        "committed": report["committed"],
        "served": served,
    }
    if report["failures"]:
        row["failures"] = report["failures"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=64, help="client threads")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_round(args.serve, args.clients[0], args.params)
        return
    raise_fd_limit()
    for clients in args.clients:
        print(json.dumps(measure(clients, args.params, args.threads)), flush=True)


if __name__ == "__main__":
    main()
