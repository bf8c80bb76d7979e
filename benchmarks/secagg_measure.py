"""One SecAgg+ measurement per (n, scenario) of secagg.py, against its plaintext reference.

The round parameters for each n, the plaintext FedAvg server round it is compared with
(decode, validate and exactly sum n float32 updates), the exact sum a SecAgg+ result must
match, and the JSON rows: times, bytes, the ratio to plaintext and the sum's error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedhive.core.rng import SeedStream
from fedhive.core.serde import weights_from_bytes, weights_to_bytes
from fedhive.core.weights import Layout, Weights
from fedhive.secagg import ClientStatus, SecAggParams, Stage
from fedhive.secagg.quantize import step
from fedhive.secagg.report import PROTOCOL_STAGES
from fedhive.strategy.aggregate import ExactWeightedSum
from secagg_driver import MESSAGE_TYPES, Cohort, make_cohort, secagg_round

TENSOR = "update"
SCENARIOS = {  # name -> the stage at which the dropped clients vanish (None: nobody drops)
    "none": None,
    "before_masked_input": Stage.MASKED_INPUT,
    "before_advertise_keys": Stage.ADVERTISE_KEYS,
}


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
    return {k: round_sig(v) for k, v in row.items()}


def _mean(values: Iterator[float] | Iterator[int]) -> float | None:
    items = list(values)
    return statistics.fmean(items) if items else None


def _mean_int(values: Iterator[int]) -> int | None:
    mean = _mean(values)
    return None if mean is None else round(mean)


def round_sig(value: Any) -> Any:
    """Floats to 4 significant digits, inside dicts and lists too."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: round_sig(v) for k, v in value.items()}
    if isinstance(value, list):
        return [round_sig(v) for v in value]
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
