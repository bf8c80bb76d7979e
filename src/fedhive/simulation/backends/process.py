"""The process backend: a pool of worker processes, fed cohorts in chunks.

Each worker is ``python -m fedhive.simulation.worker`` loading the same app from its
spec; tasks, weights and client state cross the process boundary as JSON headers and
safetensors bytes (see :mod:`fedhive.simulation.wire`), never pickled. The global model
goes to each worker once per version; tasks go in chunks to whichever worker is free,
and replies stream back as they complete. A worker that dies fails only its in-flight
tasks and is restarted for the next cohort.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedhive.core.messages import EvaluateTask, Failure, FitTask
from fedhive.core.serde import weights_from_bytes, weights_to_bytes
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError, TransportError
from fedhive.simulation.app import AppSpec
from fedhive.simulation.wire import (
    Header,
    encode_frame,
    evaluate_reply_from_json,
    fit_reply_from_json,
    read_frame,
    task_to_json,
)
from fedhive.transport.base import EvaluateOutcome, FitOutcome

_Event = tuple[int, Header | None, list[bytes]]
_Task = FitTask | EvaluateTask
_CHUNKS_PER_WORKER = 4


@dataclass
class _Proc:
    index: int
    popen: subprocess.Popen[bytes]
    reader: threading.Thread | None = None
    version: str = ""
    in_flight: dict[str, int] = field(default_factory=dict)  # client id -> round
    chunks: int = 0

    def send(self, header: Header, blobs: list[bytes] | None = None) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(encode_frame(header, blobs))
        self.popen.stdin.flush()

    def stop(self, *, polite: bool) -> None:
        """Ask the worker to exit (or kill it), reap it and close its pipes."""
        try:
            if polite:
                self.send({"type": "shutdown"})
        except (OSError, ValueError):
            pass
        try:
            self.popen.wait(timeout=10 if polite else 0.001)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.reader is not None:
            self.reader.join(timeout=10)
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class ProcessBackend:
    """Runs client tasks in ``workers`` separate processes."""

    def __init__(
        self, *, app: AppSpec, params: Mapping[str, Any], seed: int, workers: int = 2
    ) -> None:
        if workers < 1:
            raise ConfigError(f"simulation.workers: must be >= 1, got {workers}")
        self._app = app
        self._params = dict(params)
        self._seed = seed
        self._size = workers
        self._procs: dict[int, _Proc] = {}
        self._events: queue.Queue[_Event] = queue.Queue()
        self._states: dict[str, bytes] = {}
        self._cohort = 0
        self._next_index = 0

    def fit(self, tasks: Sequence[FitTask], weights: Weights) -> Iterator[FitOutcome]:
        """Run fit tasks across the workers; outcomes stream back as they finish."""
        for header, blobs in self._run("fit", tasks, weights):
            if header["type"] == "failure":
                yield Failure(**_fields(header, Failure))
            else:
                body = {
                    k: header[k]
                    for k in ("client_id", "round", "version", "num_examples", "metrics")
                }
                yield fit_reply_from_json(body, weights_from_bytes(blobs[0]))

    def evaluate(
        self, tasks: Sequence[EvaluateTask], weights: Weights
    ) -> Iterator[EvaluateOutcome]:
        """Run evaluate tasks across the workers."""
        for header, _blobs in self._run("evaluate", tasks, weights):
            if header["type"] == "failure":
                yield Failure(**_fields(header, Failure))
            else:
                body = {
                    k: header[k] for k in ("client_id", "round", "loss", "num_examples", "metrics")
                }
                yield evaluate_reply_from_json(body)

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        for proc in self._procs.values():
            proc.stop(polite=True)
        self._procs.clear()

    def _run(
        self, kind: str, tasks: Sequence[_Task], weights: Weights
    ) -> Iterator[tuple[Header, list[bytes]]]:
        if not tasks:
            return
        self._ensure_workers()
        self._cohort += 1
        cohort = self._cohort
        self._send_model(tasks[0].version, weights)
        size = max(1, math.ceil(len(tasks) / (len(self._procs) * _CHUNKS_PER_WORKER)))
        pending: list[list[_Task]] = [
            list(tasks[i : i + size]) for i in range(0, len(tasks), size)
        ][::-1]
        for proc in self._procs.values():  # forget anything an abandoned cohort left
            proc.in_flight.clear()
            proc.chunks = 0
        for proc in list(self._procs.values()):
            for _ in range(2):  # two chunks in flight keep a worker busy between frames
                self._dispatch(proc, kind, cohort, pending)
        while any(p.chunks for p in self._procs.values()):
            index, header, blobs = self._events.get()
            if index not in self._procs:
                continue
            proc = self._procs[index]
            if header is None or header.get("type") == "error":
                yield from self._lost(proc, header)
                continue
            if header.get("cohort") != cohort:
                continue  # a late frame of an abandoned cohort
            if header["type"] == "done":
                proc.chunks -= 1
                self._dispatch(proc, kind, cohort, pending)
                continue
            proc.in_flight.pop(header["client_id"], None)
            if header.get("state"):
                self._states[header["client_id"]] = blobs[-1]
            yield header, blobs
        for chunk in pending:  # every worker died: the rest cannot run
            for task in chunk:
                yield _failure_header(task.client_id, task.round, "no live worker left"), []

    def _dispatch(
        self,
        proc: _Proc,
        kind: str,
        cohort: int,
        pending: list[list[_Task]],
    ) -> None:
        if not pending or proc.index not in self._procs:
            return
        chunk = pending.pop()
        states: list[int] = []
        blobs: list[bytes] = []
        for task in chunk:
            state = self._states.get(task.client_id)
            states.append(len(blobs) if state is not None else -1)
            if state is not None:
                blobs.append(state)
            proc.in_flight[task.client_id] = task.round
        proc.chunks += 1
        header = {
            "type": kind,
            "cohort": cohort,
            "states": states,
            "tasks": [task_to_json(t) for t in chunk],
        }
        # A dead worker is reported by its reader thread; its in-flight tasks fail there.
        with contextlib.suppress(OSError):
            proc.send(header, blobs)

    def _lost(self, proc: _Proc, header: Header | None) -> Iterator[tuple[Header, list[bytes]]]:
        reason = "worker process died" if header is None else f"worker error: {header['message']}"
        del self._procs[proc.index]
        proc.stop(polite=False)
        for client_id, round_ in proc.in_flight.items():
            yield _failure_header(client_id, round_, reason), []

    def _send_model(self, version: str, weights: Weights) -> None:
        payload = weights_to_bytes(weights)
        for proc in self._procs.values():
            if proc.version != version:
                proc.send({"type": "model", "version": version}, [payload])
                proc.version = version

    def _ensure_workers(self) -> None:
        while len(self._procs) < self._size:
            proc = self._spawn()
            index, header, _ = self._wait_for(proc.index)
            if header is None or header.get("type") != "ready":
                message = "exited" if header is None else header.get("message")
                self.close()
                raise TransportError(f"simulation worker failed to start: {message}")
            self._procs[index] = proc

    def _spawn(self) -> _Proc:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        popen = subprocess.Popen(
            [sys.executable, "-m", "fedhive.simulation.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        proc = _Proc(self._next_index, popen)
        self._next_index += 1
        proc.reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        proc.reader.start()
        proc.send(
            {
                "type": "init",
                "app": self._app.spec,
                "base_dir": str(self._app.base_dir),
                "params": self._params,
                "seed": self._seed,
            }
        )
        return proc

    def _wait_for(self, index: int) -> _Event:
        while True:
            event = self._events.get()
            if event[0] == index:
                return event

    def _read(self, proc: _Proc) -> None:
        assert proc.popen.stdout is not None
        try:
            while (frame := read_frame(proc.popen.stdout)) is not None:
                self._events.put((proc.index, frame[0], frame[1]))
        except Exception:
            pass
        self._events.put((proc.index, None, []))


def _failure_header(client_id: str, round_: int, message: str) -> Header:
    return {
        "type": "failure",
        "client_id": client_id,
        "round": round_,
        "stage": "transport",
        "error_type": "TransportError",
        "message": message,
    }


def _fields(header: Header, cls: type) -> dict[str, Any]:
    return {f.name: header[f.name] for f in dataclasses.fields(cls)}
