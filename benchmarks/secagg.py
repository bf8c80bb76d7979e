"""SecAgg+ at scale: client and server compute, bytes per client, against plaintext FedAvg.

For each cohort size n (default 100, 500, 1000) and 100k-value float32 updates, runs one
SecAgg+ round (:mod:`fedhive.secagg`) per dropout scenario: nobody drops; 20% of the
clients vanish after ShareKeys, before sending their masked input (the server must then
rebuild their mask keys and strip the pairwise masks they left in their neighbours'
inputs); 20% vanish before AdvertiseKeys (no recovery needed). The sans-IO state machines
are driven here, not through ``run_local_round``, so that each party is timed on its own,
and every message crosses a simulated wire as its canonical ``to_bytes()`` encoding:

* client seconds: one client's whole part (decoding the server's messages, key
  generation, quantization, sharing, masking, unmasking response, encoding its replies),
  averaged over the clients that finished the round;
* server seconds: ``server_start``, ``server_receive`` and ``server_close_stage`` (routing,
  share verification, batched reconstruction, mask removal, decoding the sum), plus,
  separately, decoding the clients' bytes and encoding its own messages;
* bytes per client: every message it sent and received, from ``to_bytes()``;
* plaintext seconds, measured in the same run for the same n: a fedhive FedAvg server
  decoding n float32 updates from safetensors (``weights_from_bytes``), checking them
  (``validate_like``: names, shapes, finiteness) and folding each, flattened and weighted
  by its example count, into ``ExactWeightedSum`` (median of ``--repeats``).

The ratio is server seconds (state machine plus codec, as the plaintext side includes its
decoding) over plaintext seconds. Each round's sum is checked against the exact plaintext
sum of the clients it includes, within the quantization bound. Prints the settings (with
each n's derived degree k, threshold t and quantization bits), one JSON object per (n,
scenario) and a summary of the issue's targets; writes ``secagg.json`` and, with
matplotlib, ``secagg_scaling.png`` into ``--out``. Progress goes to stderr.

    python benchmarks/secagg.py [--quick] [--clients 100 500 1000] [--size 100000]
        [--out runs/bench/secagg]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedhive.core.rng import SeedStream
from fedhive.core.serde import weights_from_bytes, weights_to_bytes
from fedhive.core.weights import Layout, Weights
from fedhive.secagg import (
    AdvertiseKeys,
    ClientStatus,
    MaskedInput,
    MaskedInputRequest,
    NeighbourKeys,
    RoundSetup,
    SecAggParams,
    SecAggResult,
    ShareKeys,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
    client_handle,
    client_start,
    decode_message,
    server_close_stage,
    server_receive,
    server_start,
)
from fedhive.secagg.codec import unpack
from fedhive.secagg.quantize import step
from fedhive.secagg.report import PROTOCOL_STAGES
from fedhive.strategy.aggregate import ExactWeightedSum
from plotting import finish, pyplot

ROOT = Path(__file__).resolve().parents[1]
TENSOR = "update"
SCENARIOS = {  # name -> the stage at which the dropped clients vanish (None: nobody drops)
    "none": None,
    "before_masked_input": Stage.MASKED_INPUT,
    "before_advertise_keys": Stage.ADVERTISE_KEYS,
}
TARGET_RATIO = 5.0  # the target: server <= 5x plaintext at n = 1000, 20% dropout
TARGET_N = 1000
MESSAGE_TYPES = tuple(  # in protocol order: each server message, then the client's answer
    kind.TYPE
    for kind in (
        RoundSetup,
        AdvertiseKeys,
        NeighbourKeys,
        ShareKeys,
        MaskedInputRequest,
        MaskedInput,
        UnmaskRequest,
        UnmaskResponse,
    )
)


def secagg_params(n: int, args: argparse.Namespace) -> SecAggParams:
    """The round's security parameters for ``n`` clients (k, t, q derived from them)."""
    return SecAggParams(
        num_clients=n,
        dropout_fraction=args.dropout_fraction,
        corruption_fraction=args.corruption_fraction,
        security_bits=args.security_bits,
        correctness_bits=args.correctness_bits,
        ring_bits=args.ring_bits,
    )


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the run depends on, with each n's derived graph and quantization."""
    derived = {}
    for n in args.clients:
        p = secagg_params(n, args)
        derived[str(n)] = {
            "degree_k": p.degree,
            "threshold_t": p.threshold,
            "quantization_bits": p.quantization_bits,
            "complete_graph": p.complete_graph,
        }
    return {
        "clients": args.clients,
        "update_size": args.size,
        "dtype": "float32",
        "dropout": args.dropout,
        "scenarios": args.scenarios,
        "params": {
            "dropout_fraction": args.dropout_fraction,
            "corruption_fraction": args.corruption_fraction,
            "security_bits": args.security_bits,
            "correctness_bits": args.correctness_bits,
            "ring_bits": args.ring_bits,
            "clip_range": 1.0,
            "max_weight": secagg_params(args.clients[0], args).max_weight,
        },
        "derived": derived,
        "plaintext_repeats": args.repeats,
        "seed": args.seed,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }


@dataclass(frozen=True)
class Cohort:
    """The clients of one n: ids, float32 updates, example counts (shared by scenarios)."""

    ids: tuple[str, ...]
    updates: Mapping[str, npt.NDArray[np.float32]]
    weights: Mapping[str, int]


def make_cohort(n: int, size: int, seed: int) -> Cohort:
    """n deterministic updates (Normal(0, 0.05), like a model delta) and example counts."""
    stream = SeedStream(seed).child("secagg-bench").child(n)
    ids = tuple(f"client-{i:04d}" for i in range(n))
    updates, weights = {}, {}
    for cid in ids:
        rng = stream.child(cid).numpy()
        updates[cid] = rng.normal(0.0, 0.05, size).astype(np.float32)
        weights[cid] = int(rng.integers(10, 1000))
    return Cohort(ids, updates, weights)


@dataclass
class Meter:
    """Seconds and bytes per party, filled in while one round runs."""

    client_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    client_stage_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    server_stage_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    server_codec_s: float = 0.0
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_type: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def wire(self, cid: str, data: bytes, *, to_client: bool) -> None:
        """Count one message between ``cid`` and the server."""
        (self.received if to_client else self.sent)[cid] += len(data)
        self.by_type[(cid, decode_type(data))] += len(data)

    @contextmanager
    def client(self, cid: str, stage: Stage) -> Iterator[None]:
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.client_s[cid] += seconds
        self.client_stage_s[str(stage)] += seconds

    @contextmanager
    def server(self, stage: Stage | str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.server_stage_s[str(stage)] += time.perf_counter() - start

    @contextmanager
    def codec(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.server_codec_s += time.perf_counter() - start


def secagg_round(
    cohort: Cohort, params: SecAggParams, vanish: Mapping[Stage, frozenset[str]], seed: int
) -> tuple[SecAggResult, Meter]:
    """One round over the wire, the stage loop of ``run_local_round`` with every call timed.

    A client listed under a stage never answers that stage's message nor any later one.
    Each client message is delivered as soon as it is sent (in id order, as
    ``run_local_round`` delivers), so no stage's masked inputs pile up in memory.
    """
    meter = Meter()
    stream = SeedStream(seed).child("secagg-quantize").child(0)
    rngs = {cid: stream.child(cid).numpy() for cid in cohort.ids}
    size = next(iter(cohort.updates.values())).size
    with meter.server("setup"):
        server, setup = server_start(
            round=0, client_ids=cohort.ids, params=params, graph_seed=seed, vector_size=size
        )
    with meter.codec():
        inbox = dict.fromkeys(cohort.ids, setup.to_bytes())  # one encoding, sent to all
    states: dict[str, Any] = {}
    gone: set[str] = set()
    for stage in PROTOCOL_STAGES:
        gone |= vanish.get(stage, frozenset())
        for cid in sorted(set(inbox) - gone):
            meter.wire(cid, inbox[cid], to_client=True)
            with meter.client(cid, stage):
                message = decode_message(inbox[cid])
                if stage is Stage.ADVERTISE_KEYS:
                    states[cid], reply = client_start(
                        message,  # type: ignore[arg-type]
                        client_id=cid,
                        vector=cohort.updates[cid],
                        weight=cohort.weights[cid],
                        rng=rngs[cid],
                    )
                else:
                    states[cid], reply = client_handle(states[cid], message)  # type: ignore[arg-type]
                wire = reply.to_bytes()
            meter.wire(cid, wire, to_client=False)
            with meter.codec():
                incoming = decode_message(wire)
            with meter.server(stage):
                server = server_receive(server, incoming)  # type: ignore[arg-type]
            del wire, incoming, reply
        with meter.server(stage):
            server, requests = server_close_stage(server)
        if server.result is not None:
            break
        with meter.codec():
            inbox = {cid: request.to_bytes() for cid, request in requests.items()}
    assert server.result is not None
    return server.result, meter


def decode_type(data: bytes) -> str:
    """The type a message's header names (for the per-type byte counts)."""
    header, _ = unpack(data)
    return str(header["type"])


def plaintext_round(blobs: Sequence[bytes], counts: Sequence[int], layout: Layout) -> float:
    """Seconds for a FedAvg server to decode, check and exactly sum the updates."""
    start = time.perf_counter()
    total = ExactWeightedSum(layout.total_size)
    for blob, count in zip(blobs, counts, strict=True):
        update = weights_from_bytes(blob)
        update.validate_like(layout)  # names, shapes, dtypes, all values finite
        total.add(layout.flatten(update), count)
    _ = total.total() / total.total_weight
    return time.perf_counter() - start


def exact_sum(cohort: Cohort, included: Sequence[str]) -> tuple[npt.NDArray[np.float64], int]:
    """Σ w_i x_i and Σ w_i over ``included`` (the reference a SecAgg sum must match)."""
    total = ExactWeightedSum(next(iter(cohort.updates.values())).size)
    for cid in included:
        total.add(cohort.updates[cid].astype(np.float64), cohort.weights[cid])
    return total.total(), total.total_weight


def measure(
    cohort: Cohort,
    params: SecAggParams,
    *,
    scenario: str,
    dropout: float,
    plaintext: Sequence[float],
    seed: int,
) -> dict[str, Any]:
    """One (n, scenario) row: times, bytes, the ratio and the sum's error."""
    n = len(cohort.ids)
    stage = SCENARIOS[scenario]
    dropped: frozenset[str] = frozenset()
    if stage is not None and dropout > 0:
        pick = SeedStream(seed).child("secagg-dropouts").child(n).numpy()
        chosen = pick.choice(n, size=round(dropout * n), replace=False)
        dropped = frozenset(cohort.ids[i] for i in chosen)
    start = time.perf_counter()
    result, meter = secagg_round(cohort, params, {stage: dropped} if dropped else {}, seed)
    wall = time.perf_counter() - start
    done = sorted(c for c, s in result.statuses.items() if s is ClientStatus.OK)
    server_s = sum(meter.server_stage_s.values())
    server_total = server_s + meter.server_codec_s
    plaintext_s = statistics.median(plaintext)
    row: dict[str, Any] = {
        "n": n,
        "scenario": scenario,
        "dropout": dropout if dropped else 0.0,
        "dropped": len(dropped),
        "aborted": result.aborted,
        "included": len(result.included),
        "client_s": _mean(meter.client_s[c] for c in done),
        "client_s_max": max((meter.client_s[c] for c in done), default=None),
        "client_stage_s": {
            str(s): meter.client_stage_s[str(s)] / max(len(done), 1) for s in PROTOCOL_STAGES
        },
        "server_s": server_total,
        "server_state_machine_s": server_s,
        "server_codec_s": meter.server_codec_s,
        "server_stage_s": dict(meter.server_stage_s),
        "plaintext_s": plaintext_s,
        "plaintext_s_range": [min(plaintext), max(plaintext)],
        "ratio": server_total / plaintext_s,
        "ratio_state_machine": server_s / plaintext_s,
        "ratio_vs_plaintext_of_included": server_total
        / (plaintext_s * max(len(result.included), 1) / n),
        "bytes_sent": _mean_int(meter.sent[c] for c in done),
        "bytes_received": _mean_int(meter.received[c] for c in done),
        "bytes_by_message": {
            kind: _mean_int(meter.by_type[(c, kind)] for c in done) for kind in MESSAGE_TYPES
        },
        "wall_s": wall,
    }
    if not result.aborted:
        assert result.weighted_sum is not None
        reference, weight = exact_sum(cohort, result.included)
        bound = len(result.included) * step(params) * (1 + 2**-8)
        error = float(np.max(np.abs(result.weighted_sum - reference)))
        row |= {
            "max_abs_error": error,
            "error_bound": bound,
            "sum_ok": error <= bound * 1.01 and result.total_weight == weight,
        }
    return {k: _round(v) for k, v in row.items()}


def _mean(values: Iterator[float] | Iterator[int]) -> float | None:
    items = list(values)
    return statistics.fmean(items) if items else None


def _mean_int(values: Iterator[int]) -> int | None:
    mean = _mean(values)
    return None if mean is None else round(mean)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def run_size(n: int, args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every scenario of one cohort size, with its plaintext reference."""
    params = secagg_params(n, args)
    log(f"n={n}: k={params.degree} t={params.threshold} q={params.quantization_bits}")
    cohort = make_cohort(n, args.size, args.seed)
    blobs = [weights_to_bytes(Weights({TENSOR: cohort.updates[c]})) for c in cohort.ids]
    layout = weights_from_bytes(blobs[0]).layout()
    counts = [cohort.weights[c] for c in cohort.ids]
    plaintext = [plaintext_round(blobs, counts, layout) for _ in range(args.repeats)]
    plaintext_bytes = len(blobs[0])
    del blobs
    log(f"n={n}: plaintext round {statistics.median(plaintext):.3f}s")
    rows = []
    for scenario in args.scenarios:
        rates = [0.0] if SCENARIOS[scenario] is None else [d for d in args.dropout if d > 0]
        for dropout in rates:
            row = measure(
                cohort,
                params,
                scenario=scenario,
                dropout=dropout,
                plaintext=plaintext,
                seed=args.seed,
            )
            row["plaintext_bytes_sent"] = plaintext_bytes
            rows.append(row)
            print(json.dumps(row), flush=True)
            log(
                f"n={n} {scenario} {dropout:.0%}: client {row['client_s']:.4f}s, server "
                f"{row['server_s']:.3f}s ({row['ratio']:.2f}x plaintext), wall {row['wall_s']:.1f}s"
            )
    return rows


def targets(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's two targets, evaluated on what was measured (never assumed)."""
    largest = max(args.clients)
    at = [
        r
        for r in rows
        if r["n"] == largest and r["scenario"] == "before_masked_input" and r["dropout"] == 0.2
    ]
    ratio = at[0]["ratio"] if at else None
    server = {
        "target": f"server <= {TARGET_RATIO:g}x plaintext at n = {TARGET_N}, 20% dropout",
        "evaluated_at_n": largest if at else None,
        "ratio": ratio,
        "ratio_state_machine": at[0]["ratio_state_machine"] if at else None,
        "met": None if ratio is None or largest != TARGET_N else ratio <= TARGET_RATIO,
    }
    growth: dict[str, Any] = {"target": "per-client cost grows about as log n"}
    smallest = min(args.clients)
    for scenario in args.scenarios:
        by_n = {r["n"]: r for r in rows if r["scenario"] == scenario}
        if smallest == largest or smallest not in by_n or largest not in by_n:
            continue
        low, high = by_n[smallest], by_n[largest]
        log_growth = math.log(largest) / math.log(smallest)
        cost = high["client_s"] / low["client_s"]
        growth[scenario] = {
            "client_s_growth": _round(cost),
            "bytes_sent_growth": _round(high["bytes_sent"] / low["bytes_sent"]),
            "log_n_growth": _round(log_growth),
            "linear_n_growth": _round(largest / smallest),
            "met": cost <= 1.25 * log_growth,  # no faster than log n, with 25% slack
        }
    return {"server_vs_plaintext": server, "client_cost_vs_log_n": growth}


def flower() -> str:
    """Whether Flower's SecAgg+ could be timed alongside (it is not, here)."""
    try:
        import flwr
    except ImportError:
        return "flwr not installed"
    return f"flwr {getattr(flwr, '__version__', '?')} installed; its SecAgg+ is not timed here"


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Per-client seconds, server seconds and bytes per client against n (log x)."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        series[f"{row['scenario']} {row['dropout']:.0%}"].append(row)
    for label, points in series.items():
        ns = [r["n"] for r in points]
        axes[0].plot(ns, [r["client_s"] for r in points], marker="o", label=label)
        axes[1].plot(ns, [r["server_s"] for r in points], marker="o", label=label)
        axes[2].plot(ns, [r["bytes_sent"] / 1e6 for r in points], marker="o", label=label)
    first = next(iter(series.values()))
    ns = sorted({r["n"] for r in rows})
    anchor = first[0]["client_s"] / math.log(first[0]["n"])
    axes[0].plot(ns, [anchor * math.log(n) for n in ns], "k--", lw=1, label="∝ log n")
    plaintext = {r["n"]: r["plaintext_s"] for r in rows}
    axes[1].plot(ns, [plaintext[n] for n in ns], "k-", lw=1.5, label="plaintext FedAvg")
    axes[1].plot(ns, [TARGET_RATIO * plaintext[n] for n in ns], "k:", lw=1, label="5x plaintext")
    axes[2].axhline(rows[0]["plaintext_bytes_sent"] / 1e6, color="k", lw=1, label="plaintext")
    axes[0].set(ylabel="client compute, s (mean)", title="per client")
    axes[1].set(ylabel="server compute, s", title="server", yscale="log")
    axes[2].set(ylabel="MB sent per client", title="upload per client")
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    for ax in axes:
        ax.set(xscale="log", xlabel="clients n")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xticks([], minor=True)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    finish(fig, list(axes), path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n in {50, 100}, 10k values")
    parser.add_argument("--clients", type=int, nargs="+", default=None, help="cohort sizes")
    parser.add_argument("--size", type=int, default=None, help="update size (100000)")
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.2], help="rates")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--dropout-fraction", type=float, default=0.2, help="delta")
    parser.add_argument("--corruption-fraction", type=float, default=0.1, help="gamma")
    parser.add_argument("--security-bits", type=int, default=40, help="sigma")
    parser.add_argument(
        "--correctness-bits", type=int, default=None, help="eta (20; 8 with --quick)"
    )
    parser.add_argument("--ring-bits", type=int, choices=(32, 64), default=64)
    parser.add_argument("--repeats", type=int, default=3, help="plaintext rounds (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "secagg")
    args = parser.parse_args()
    args.clients = sorted(args.clients or ([50, 100] if args.quick else [100, 500, 1000]))
    args.size = args.size or (10_000 if args.quick else 100_000)
    # eta = 20 admits no graph at n = 50 (delta 0.2, gamma 0.1, sigma 40); eta = 8 does.
    args.correctness_bits = args.correctness_bits or (8 if args.quick else 20)

    def log(text: str) -> None:
        print(f"[secagg] {text}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    setup = settings(args)
    print(json.dumps({"settings": setup}), flush=True)
    rows = [row for n in args.clients for row in run_size(n, args, log)]
    summary = {"targets": targets(rows, args), "flower": flower()}
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(summary), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"settings": setup, "rows": rows, **summary}
    (args.out / "secagg.json").write_text(json.dumps(report, indent=1) + "\n")
    title = (
        f"SecAgg+ round, {args.size:,} float32 values per update, {setup['machine']['cpus']} CPUs"
    )
    if plot(rows, args.out / "secagg_scaling.png", title):
        print(json.dumps({"plot": str(args.out / "secagg_scaling.png")}))


if __name__ == "__main__":
    main()
