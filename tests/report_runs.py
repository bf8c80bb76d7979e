"""Synthetic run directories for the report tests: round records built by the real
:class:`~fedhive.server.history.RoundRecord` (so their JSON is what runs write), and a
strict PNG reader (signature, chunk CRCs, the pixel data's size) to check written images."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from fedhive.server.history import CohortStats, RoundRecord, Traffic
from fedhive.strategy.accounting import PrivacyReport


def record(
    round: int,
    *,
    accuracy: float | None = None,
    loss: float | None = None,
    federated: dict[str, float] | None = None,
    train: dict[str, float] | None = None,
    epsilon: float | None = None,
    traffic: dict[str, tuple[int, int]] | None = None,
    selected: int = 4,
    failed: int = 0,
    seconds: float = 0.5,
) -> dict[str, Any]:
    """One metrics.jsonl object; ``traffic`` maps a client to its (bytes up, bytes down)."""
    fit = CohortStats(selected=selected, succeeded=selected - failed, failed=failed)
    for client, (up, down) in (traffic or {}).items():
        fit.traffic[client] = Traffic(bytes_up=up, bytes_down=down)
        fit.bytes_up += up
        fit.bytes_down += down
    centralized = {k: v for k, v in (("accuracy", accuracy), ("loss", loss)) if v is not None}
    return RoundRecord(
        round=round,
        seconds=seconds,
        committed=True,
        version=f"v{round}",
        fit=fit,
        evaluate=CohortStats(),
        train=train or {},
        centralized=centralized,
        federated=federated or {},
        privacy=PrivacyReport(epsilon=epsilon, delta=1e-5) if epsilon is not None else None,
    ).to_json()


def write_run(
    path: Path,
    records: list[dict[str, Any]],
    *,
    config: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
) -> Path:
    """A run directory as ``fedhive simulate --out`` leaves it (no model: the report
    never reads it)."""
    path.mkdir(parents=True)
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    (path / "metrics.jsonl").write_text(lines, encoding="utf-8")
    if config is not None:
        (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return path


FULL_PLOTS = [
    "metric_accuracy",
    "metric_loss",
    "train_train_loss",
    "clients",
    "bytes",
    "round_time",
    "epsilon",
    "per_client_bytes_up",
]
"""The plots :func:`full_records` gives, in page order."""


def full_records(rounds: int = 4) -> list[dict[str, Any]]:
    """Every series the report draws: both evaluations (federated every other round),
    train metrics, epsilon, and per-client traffic."""
    return [
        record(
            r,
            accuracy=0.2 * r,
            loss=2.0 - 0.3 * r,
            federated={"accuracy": 0.15 * r, "loss": 2.1 - 0.3 * r} if r % 2 == 0 else None,
            train={"train_loss": 1.5 - 0.1 * r},
            epsilon=1.5 * r,
            traffic={"c0": (100 * r, 1000), "c1": (300, 1000), "c2": (200, 1000)},
            failed=1 if r == 3 else 0,
        )
        for r in range(1, rounds + 1)
    ]


def png_size(path: Path) -> tuple[int, int]:
    """The (width, height) of a PNG file that decodes: every chunk's CRC holds and the
    inflated pixel data has the size IHDR promises. Raises AssertionError otherwise."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        position += 12 + length
    assert chunks[0][0] == b"IHDR"
    assert chunks[-1][0] == b"IEND"
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(pixels) == height * (1 + (width * channels * depth + 7) // 8)
    return width, height
