"""The timed SecAgg+ driver of secagg.py: cohorts, the per-party meter and one round over the wire.

The sans-IO state machines of :mod:`fedhive.secagg` are driven here, not through
``run_local_round``, so that each party is timed on its own, and every message crosses a
simulated wire as its canonical ``to_bytes()`` encoding, counted per client and per
message type.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fedhive.core.rng import SeedStream
from fedhive.secagg import (
    AdvertiseKeys,
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
from fedhive.secagg.report import PROTOCOL_STAGES

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
