"""A simulation worker process: runs cohorts of client tasks for the process backend.

A worker is either forked from the driver (it inherits the built app) or started as
``python -m fedhive.simulation.worker`` (it builds the app from the spec in its first
frame). Either way it reads frames on one pipe and writes frames on another; a spawned
worker sends the user's own prints to stderr so they can never corrupt a frame.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from fedhive.client.base import Client, TaskOrigin
from fedhive.client.pipeline import run_evaluate, run_fit
from fedhive.core.failures import Stage
from fedhive.core.messages import EvaluateReply, Failure, FitReply, FitTask
from fedhive.core.serde import RecordValue, record_from_bytes, record_to_bytes, weights_from_bytes
from fedhive.core.weights import Weights
from fedhive.simulation.app import AppSpec, SimulationApp
from fedhive.simulation.wire import (
    Header,
    encode_frame,
    outcome_bytes,
    read_frame,
    task_from_bytes,
)


class _Worker:
    def __init__(self, out: IO[bytes], app: SimulationApp | None = None) -> None:
        self.out = out
        self.app = app
        self.weights: Weights | None = None

    def send(self, header: Header, blobs: list[bytes] | None = None) -> None:
        self.out.write(encode_frame(header, blobs))
        self.out.flush()

    def handle(self, header: Header, blobs: list[bytes]) -> bool:
        kind = header.get("type")
        if kind == "init":
            spec = AppSpec(header["app"], Path(header["base_dir"]))
            self.app = spec.build(header["params"], header["seed"])
            self.send({"type": "ready"})
        elif kind == "model":
            self.weights = weights_from_bytes(blobs[0])
        elif kind in ("fit", "evaluate"):
            self.run_cohort(header, blobs)
        elif kind == "shutdown":
            return False
        else:
            raise ValueError(f"unknown frame type {kind!r}")
        return True

    def run_cohort(self, header: Header, blobs: list[bytes]) -> None:
        assert self.app is not None, "init comes first"
        assert self.weights is not None, "a model frame comes before tasks"
        cohort = header["cohort"]
        clients, states = header["clients"], header["states"]
        for index, (client_id, state_index) in enumerate(zip(clients, states, strict=True)):
            task = task_from_bytes(blobs[index], client_id=client_id)
            state: dict[str, RecordValue] = (
                record_from_bytes(blobs[state_index]) if state_index >= 0 else {}
            )
            had_state = bool(state)
            outcome: FitReply | EvaluateReply | Failure
            try:
                client: Client = self.app.client.client_fn(client_id)
            except Exception as exc:  # the user's factory: this task fails
                outcome = Failure.of(client_id, task.round, Stage.CLIENT_FN, exc)
            else:
                if isinstance(task, FitTask):
                    origin = TaskOrigin.simulation(task)
                    outcome = run_fit(client, task, self.weights, state, origin=origin)
                else:
                    outcome = run_evaluate(client, task, self.weights, state)
            self.send_outcome(cohort, outcome, state if (state or had_state) else None)
        self.send({"type": "done", "cohort": cohort})

    def send_outcome(
        self,
        cohort: int,
        outcome: FitReply | EvaluateReply | Failure,
        state: dict[str, RecordValue] | None,
    ) -> None:
        blobs = list(outcome_bytes(outcome))
        if state is not None:
            blobs.append(record_to_bytes(state))
        self.send({"type": "outcome", "cohort": cohort, "state": state is not None}, blobs)


def _serve(worker: _Worker, frames: IO[bytes]) -> int:
    while True:
        frame = read_frame(frames)
        if frame is None:
            return 0
        try:
            if not worker.handle(*frame):
                return 0
        except Exception as exc:  # report, then let the driver decide; never hang
            worker.send({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
            return 1


def serve_forked(app: SimulationApp, read_fd: int, write_fd: int) -> int:
    """The loop of a worker forked from the driver, with the driver's built ``app``."""
    with os.fdopen(read_fd, "rb") as frames, os.fdopen(write_fd, "wb") as out:
        worker = _Worker(out, app)
        worker.send({"type": "ready"})
        return _serve(worker, frames)


def main() -> int:
    """Serve frames on stdin/stdout until shutdown or end of input (a spawned worker)."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # user prints go to stderr
    return _serve(_Worker(out), sys.stdin.buffer)


if __name__ == "__main__":
    sys.exit(main())
