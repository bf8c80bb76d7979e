"""Bytes per client per round in a deployment: plain, 8-bit uplink, and 8-bit uplink
with the delta downlink, over mutual TLS on 127.0.0.1 (issue 14, item 7).

For each variant a server process (mutual TLS, signed results) runs ``--rounds`` FedAvg
rounds of ``--clients`` clients (default 500) that connect from this process, each with
its own certificate and TLS connection, driven by ``--threads`` threads (the deployment
round benchmark's harness: ``benchmarks/deployment_round.py``). The model is one tensor
of ``--params`` float32 values (seeded normal); each client's update is its own seeded
normal step of standard deviation 0.01 a round, so the global model moves by the mean
of 500 such steps: a trained model's rounds move it by about that much relative to its
weights. Variants, in one invocation (the plain one is the reference of the ratios):

- ``none``: safetensors updates up, the whole model down;
- ``8-bit``: updates stochastically quantized to 8 bits (one scale per tensor) up;
- ``8-bit + delta``: that, and ``[server] delta_downlink``: a client that received the
  last round's model downloads the lossless delta against it.

    python benchmarks/deployment_bandwidth.py [--clients 500] [--rounds 3]
        [--params 100000] [--out runs/bench-bandwidth]

Prints one JSON object per variant and a summary, and writes them to
``--out/results.json``. Per variant: ``up`` / ``down``: the server's measured
per-client bytes each round (the payload bytes of the accepted uploads; the data of the
download streams it served), as ``{"round": r, "mean": ..., "max": ...}``;
``up_per_client_round`` / ``down_per_client_round``: the means over every client and
round, and ``down_after_first``: over rounds 2 on (round 1 has no base: every client
downloads the whole model); ``wire_per_client_round_up`` / ``_down``: TCP payload bytes
(TLS records, HTTP/2, protobuf, polls) the server's sockets received / sent in the run,
from ``ss -ti``, per client and round (null without ``ss``); ``seconds``: the run's wall
time; ``succeeded`` per round. The summary gives each variant's ratios none / variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from deployment_round import (
    ROUND_TIMEOUT_S,
    model,
    mtls_link,
    mtls_server,
    raise_fd_limit,
    socket_bytes,
)
from fedhive.core.messages import ClientConfig, EvaluateResult, FitResult
from fedhive.core.weights import Weights

REGISTER_TIMEOUT_S = 180.0
VARIANTS = {"none": (False, False), "8-bit": (True, False), "8-bit + delta": (True, True)}


class StepClient:
    """Trains nothing: its update is its own seeded normal step (std 0.01) a round."""

    def __init__(self, index: int) -> None:
        self.index = index

    def fit(self, weights: Weights, config: ClientConfig, context: Any) -> FitResult:
        rng = np.random.default_rng([self.index, int(context.round)])
        steps = {
            k: (0.01 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in weights.items()
        }
        return FitResult(delta=Weights(steps), num_examples=1)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def serve_rounds(pki: Path, clients: int, params: int, rounds: int, variant: str) -> None:
    """The server process: print the port, wait for the clients, run the rounds, report."""
    from fedhive.compression import Pipeline, StochasticQuantization
    from fedhive.core.extensions import Compression
    from fedhive.server.orchestrator import RoundLoop
    from fedhive.strategy import fedavg
    from fedhive.transport.downlink import Downlink

    quantized, delta = VARIANTS[variant]
    raise_fd_limit()
    transport = mtls_server(pki, clients, downlink=Downlink(delta=delta))
    eight_bit = Compression(pipeline=Pipeline((StochasticQuantization(bits=8),)))
    config = ClientConfig(extensions=(eight_bit,) if quantized else ())
    try:
        print(json.dumps({"port": transport.port}), flush=True)
        if not transport.wait_for_clients(clients, timeout=REGISTER_TIMEOUT_S):
            raise SystemExit(f"server: only {len(transport.client_ids())} of {clients} came")
        strategy = fedavg(min_available_clients=clients, client_config=config)
        loop = RoundLoop(strategy=strategy, transport=transport, seed=0)
        sent0, received0 = socket_bytes(transport.port)
        start = time.perf_counter()
        history = loop.run(model(params), rounds).history
        seconds = time.perf_counter() - start
        sent1, received1 = socket_bytes(transport.port)
        report = {
            "up": [
                _figures(r.round, [t.bytes_up for t in r.fit.traffic.values()]) for r in history
            ],
            "down": [
                _figures(r.round, [t.bytes_down for t in r.fit.traffic.values()]) for r in history
            ],
            "wire_up": received1 - received0 if sent0 >= 0 else None,
            "wire_down": sent1 - sent0 if sent0 >= 0 else None,
            "seconds": seconds,
            "succeeded": [r.fit.succeeded for r in history],
        }
        print(json.dumps(report), flush=True)
    finally:
        transport.close()


def _figures(round_: int, sizes: list[int]) -> dict[str, Any]:
    return {
        "round": round_,
        "mean": round(sum(sizes) / max(1, len(sizes)), 1),
        "max": max(sizes, default=0),
    }


def run_variant(pki: Path, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start the server process for ``variant``, serve its rounds with the clients."""
    from fedhive.client.runner import serve
    from fedhive.transport.grpc.connection import GrpcLink

    command = [sys.executable, __file__, "--serve", str(pki), "--variant", variant]
    command += ["--clients", str(args.clients), "--params", str(args.params)]
    command += ["--rounds", str(args.rounds)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    links: list[GrpcLink] = []
    pool = ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="client")
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        if not first:
            raise RuntimeError(f"server exited before serving (rc {server.wait()})")
        port = json.loads(first)["port"]
        links.extend(mtls_link(pki, port, index) for index in range(args.clients))
        list(pool.map(register, links))
        # One task per client per round, a round at a time: only `threads` clients are
        # served at once, and a round needs every client (a serve loop kept waiting for
        # the next round would hold its thread while others wait for this one).
        clients = [StepClient(i) for i in range(args.clients)]
        for _round in range(args.rounds):
            futures = [
                pool.submit(serve, link, client, stop=stop, max_tasks=1)
                for link, client in zip(links, clients, strict=True)
            ]
            for future in futures:
                future.result(timeout=ROUND_TIMEOUT_S)
        out, _ = server.communicate(timeout=REGISTER_TIMEOUT_S)
        if server.returncode != 0 or not out.strip():
            raise RuntimeError(f"server failed (rc {server.returncode})")
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
            server.wait()
        pool.shutdown(wait=True, cancel_futures=True)
        for link in links:
            link.close()
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return _row(variant, report, args)


def register(link: Any, attempts: int = 5) -> None:
    """Register, retrying: hundreds of TLS handshakes at once on two cores can time out."""
    from fedhive.errors import PeerRejectedError, TransportError

    for attempt in range(attempts):
        try:
            link.register()
            return
        except PeerRejectedError:
            raise
        except TransportError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)


def _row(variant: str, report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ups = [r["mean"] for r in report["up"]]
    downs = [r["mean"] for r in report["down"]]
    per = args.clients * args.rounds
    return {
        "variant": variant,
        "clients": args.clients,
        "rounds": args.rounds,
        "params": args.params,
        "up_per_client_round": round(sum(ups) / len(ups), 1),
        "down_per_client_round": round(sum(downs) / len(downs), 1),
        "down_after_first": round(sum(downs[1:]) / max(1, len(downs) - 1), 1),
        "wire_per_client_round_up": None
        if report["wire_up"] is None
        else round(report["wire_up"] / per),
        "wire_per_client_round_down": None
        if report["wire_down"] is None
        else round(report["wire_down"] / per),
        "up": report["up"],
        "down": report["down"],
        "seconds": round(report["seconds"], 2),
        "succeeded": report["succeeded"],
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each variant's ratios against ``none`` of the same run."""
    ref = rows[0]
    ratios = {}
    for row in rows:
        ratios[row["variant"]] = {
            key: round(ref[key] / row[key], 3) if row[key] else None
            for key in (
                "up_per_client_round",
                "down_per_client_round",
                "down_after_first",
                "wire_per_client_round_up",
                "wire_per_client_round_down",
            )
            if ref[key] is not None
        }
    return {"summary": "none / variant", "ratios": ratios}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=64, help="client threads")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-bandwidth"))
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve_rounds(args.serve, args.clients, args.params, args.rounds, args.variant)
        return
    from fedhive.pki.provision import provision

    raise_fd_limit()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedhive-bench-") as tmp:
        pki = Path(tmp) / "pki"
        provision(pki, clients=args.clients)
        for variant in VARIANTS:
            rows.append(run_variant(pki, variant, args))
            print(json.dumps(rows[-1]), flush=True)
    result = summary(rows)
    print(json.dumps(result), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"variants": rows, **result}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
