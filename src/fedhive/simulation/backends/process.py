"""The process backend: a pool of worker processes, fed cohorts in chunks.

Workers are forked from the driver (they inherit the built app: nothing to reload) or,
with ``start_method="spawn"``, started as fresh interpreters that load the app from its
spec. Tasks and outcomes cross the process boundary as the gRPC wire's protobuf
messages, weights and client state as safetensors bytes, in frames (see
:mod:`fedhive.simulation.wire`), never pickled. The global model goes to each worker
once per version, as the bytes the round loop's
:class:`~fedhive.core.version.ModelVersion` made (never re-encoded here); tasks go in
chunks to whichever worker is free, and replies stream back as they complete. One
thread drives every pipe through a selector with non-blocking writes, so a large frame
can never deadlock a worker that is itself writing. A worker that dies fails only its
in-flight tasks and is replaced for the next cohort.
"""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedhive.config.simulated import StartMethod
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import EvaluateReply, EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.version import ModelVersion
from fedhive.errors import ConfigError, SerializationError, TransportError
from fedhive.simulation.app import AppSpec, SimulationApp
from fedhive.simulation.states import MemoryStateStore, StateStore
from fedhive.simulation.wire import (
    FrameDecoder,
    Header,
    encode_frame,
    outcome_from_bytes,
    task_bytes,
)
from fedhive.simulation.worker import serve_forked
from fedhive.transport.base import EvaluateOutcome, FitOutcome

_Task = FitTask | EvaluateTask
_Event = tuple["_Proc", Header | None, list[bytes]]
_CHUNKS_PER_WORKER = 4
_READ_SIZE = 1 << 20


@dataclass
class _Proc:
    index: int
    pid: int
    write_fd: int
    read_fd: int
    popen: subprocess.Popen[bytes] | None = None
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    outbox: bytearray = field(default_factory=bytearray)
    version: str = ""
    in_flight: dict[str, int] = field(default_factory=dict)  # client id -> round
    chunks: int = 0

    def reap(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the worker to exit, then kill it."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            return
        deadline = time.monotonic() + timeout
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.01)


class ProcessBackend:
    """Runs client tasks in ``workers`` separate processes.

    Client states stay in the driver's ``states`` store (default: in memory): each task
    carries its client's record bytes, each outcome brings back what the task left.
    """

    def __init__(
        self,
        *,
        app: SimulationApp | None = None,
        spec: AppSpec | None = None,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
        workers: int = 2,
        start_method: StartMethod = StartMethod.FORK,
        states: StateStore | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"simulation.workers: must be >= 1, got {workers}")
        if start_method == StartMethod.FORK and (app is None or not hasattr(os, "fork")):
            raise ConfigError("simulation.start_method: fork needs a built app and POSIX")
        if start_method == StartMethod.SPAWN and spec is None:
            raise ConfigError("simulation.start_method: spawn needs the app's spec")
        self._app, self._spec, self._params = app, spec, dict(params or {})
        self._seed, self._size, self._start = seed, workers, start_method
        self._procs: dict[int, _Proc] = {}
        self._selector = selectors.DefaultSelector()
        self._states = MemoryStateStore() if states is None else states
        self._cohort = 0
        self._next_index = 0

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        """Run fit tasks across the workers; outcomes stream back as they finish."""
        for outcome in self._run("fit", tasks, model):
            if isinstance(outcome, EvaluateReply):
                raise TransportError("a worker answered a fit task with an evaluation")
            yield outcome

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run evaluate tasks across the workers."""
        for outcome in self._run("evaluate", tasks, model):
            if isinstance(outcome, FitReply):
                raise TransportError("a worker answered an evaluate task with a fit")
            yield outcome

    def close(self) -> None:
        """Stop every worker (politely, then by force) and release the pipes."""
        for proc in list(self._procs.values()):
            with contextlib.suppress(OSError):
                os.set_blocking(proc.write_fd, True)
                os.write(proc.write_fd, encode_frame({"type": "shutdown"}))
            self._drop(proc, timeout=10)
        self._selector.close()
        self._states.close()

    def _run(
        self, kind: str, tasks: Sequence[_Task], model: ModelVersion
    ) -> Iterator[FitReply | EvaluateReply | Failure]:
        if not tasks:
            return
        self._ensure_workers()
        self._cohort += 1
        cohort = self._cohort
        self._send_model(model)
        size = max(1, math.ceil(len(tasks) / (len(self._procs) * _CHUNKS_PER_WORKER)))
        pending = [list(tasks[i : i + size]) for i in range(0, len(tasks), size)][::-1]
        for proc in self._procs.values():  # forget anything an abandoned cohort left
            proc.in_flight.clear()
            proc.chunks = 0
        for proc in list(self._procs.values()):
            for _ in range(2):  # two chunks in flight keep a worker busy between frames
                self._dispatch(proc, kind, cohort, pending)
        while any(p.chunks for p in self._procs.values()):
            for proc, header, blobs in self._poll():
                if header is None or header.get("type") == "error":
                    yield from self._lost(proc, header)
                elif header.get("cohort") != cohort:
                    continue  # a late frame of an abandoned cohort
                elif header["type"] == "done":
                    proc.chunks -= 1
                    self._dispatch(proc, kind, cohort, pending)
                else:
                    outcome = outcome_from_bytes(blobs[0], blobs[1])
                    proc.in_flight.pop(outcome.client_id, None)
                    if header.get("state"):
                        self._states.put(outcome.client_id, blobs[2])
                    yield outcome
        for chunk in pending:  # every worker died: the rest cannot run
            for task in chunk:
                yield _lost_task(task.client_id, task.round, "no live worker left")

    def _dispatch(self, proc: _Proc, kind: str, cohort: int, pending: list[list[_Task]]) -> None:
        if not pending or proc.index not in self._procs:
            return
        chunk = pending.pop()
        states: list[int] = []
        blobs = [task_bytes(task) for task in chunk]
        for task in chunk:
            state = self._states.get(task.client_id)
            states.append(len(blobs) if state is not None else -1)
            if state is not None:
                blobs.append(state)
            proc.in_flight[task.client_id] = task.round
        proc.chunks += 1
        clients = [task.client_id for task in chunk]
        header = {"type": kind, "cohort": cohort, "clients": clients, "states": states}
        self._send(proc, encode_frame(header, blobs))

    def _lost(self, proc: _Proc, header: Header | None) -> Iterator[Failure]:
        reason = "worker process died" if header is None else f"worker error: {header['message']}"
        self._drop(proc, timeout=0)
        for client_id, round_ in proc.in_flight.items():
            yield _lost_task(client_id, round_, reason)

    def _send_model(self, model: ModelVersion) -> None:
        """Send ``model``'s bytes to each worker that does not hold it yet (the frame is
        made only when one needs it)."""
        behind = [proc for proc in self._procs.values() if proc.version != model.digest]
        if not behind:
            return
        frame = encode_frame({"type": "model", "version": model.digest}, [model.data])
        for proc in behind:
            self._send(proc, frame)
            proc.version = model.digest

    def _send(self, proc: _Proc, frame: bytes) -> None:
        proc.outbox += frame
        self._flush(proc)

    def _flush(self, proc: _Proc) -> None:
        try:
            while proc.outbox:
                written = os.write(proc.write_fd, proc.outbox[:_READ_SIZE])
                del proc.outbox[:written]
        except BlockingIOError:
            pass
        except OSError:
            proc.outbox.clear()  # a dead worker: its reader reports it
        registered = proc.write_fd in self._selector.get_map()
        if proc.outbox and not registered:
            self._selector.register(proc.write_fd, selectors.EVENT_WRITE, proc)
        elif not proc.outbox and registered:
            self._selector.unregister(proc.write_fd)

    def _poll(self) -> Iterator[_Event]:
        """One round of the selector: flush what can be written, decode what arrived."""
        for key, _mask in self._selector.select():
            proc: _Proc = key.data
            if key.fd == proc.write_fd:
                self._flush(proc)
                continue
            try:
                data = os.read(proc.read_fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                yield proc, None, []
                continue
            try:
                frames = proc.decoder.feed(data)
            except SerializationError as exc:
                yield proc, {"type": "error", "message": f"unreadable frame: {exc}"}, []
                continue
            for header, blobs in frames:
                yield proc, header, blobs

    def _ensure_workers(self) -> None:
        starting = [self._start_worker() for _ in range(self._size - len(self._procs))]
        waiting = {proc.index for proc in starting}
        while waiting:
            for proc, header, _ in self._poll():
                if proc.index not in waiting:
                    continue
                if header is None or header.get("type") != "ready":
                    message = "it exited" if header is None else header.get("message")
                    self.close()
                    raise TransportError(f"a simulation worker failed to start: {message}")
                waiting.discard(proc.index)

    def _start_worker(self) -> _Proc:
        proc = self._fork() if self._start == StartMethod.FORK else self._spawn()
        for fd in (proc.write_fd, proc.read_fd):
            os.set_blocking(fd, False)
        self._selector.register(proc.read_fd, selectors.EVENT_READ, proc)
        self._procs[proc.index] = proc
        self._next_index += 1
        self._flush(proc)  # a spawned worker's init frame
        return proc

    def _fork(self) -> _Proc:
        to_child = os.pipe()
        from_child = os.pipe()
        inherited = [fd for p in self._procs.values() for fd in (p.write_fd, p.read_fd)]
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the driver's code
            code = 1
            try:
                for fd in (to_child[1], from_child[0], self._selector.fileno(), *inherited):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                assert self._app is not None
                code = serve_forked(self._app, to_child[0], from_child[1])
            finally:
                os._exit(code)
        os.close(to_child[0])
        os.close(from_child[1])
        return _Proc(self._next_index, pid, write_fd=to_child[1], read_fd=from_child[0])

    def _spawn(self) -> _Proc:
        assert self._spec is not None
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        popen = subprocess.Popen(
            [sys.executable, "-m", "fedhive.simulation.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert popen.stdin is not None
        assert popen.stdout is not None
        proc = _Proc(
            self._next_index, popen.pid, popen.stdin.fileno(), popen.stdout.fileno(), popen=popen
        )
        init = {
            "type": "init",
            "app": self._spec.spec,
            "base_dir": str(self._spec.base_dir),
            "params": self._params,
            "seed": self._seed,
        }
        proc.outbox += encode_frame(init)
        return proc

    def _drop(self, proc: _Proc, *, timeout: float) -> None:
        self._procs.pop(proc.index, None)
        for fd in (proc.read_fd, proc.write_fd):
            if fd in self._selector.get_map():
                self._selector.unregister(fd)
        if proc.popen is not None:
            for pipe in (proc.popen.stdin, proc.popen.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]
        else:
            for fd in (proc.write_fd, proc.read_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
        if timeout == 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.reap(timeout)


def _lost_task(client_id: str, round_: int, message: str) -> Failure:
    return Failure(
        client_id=client_id,
        round=round_,
        stage=Stage.TRANSPORT,
        kind=FailureKind.TRANSPORT,
        message=message,
    )
