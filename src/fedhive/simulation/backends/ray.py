"""The Ray backend: client tasks on Ray actors, on this machine or across a Ray cluster.

Ray is an optional extra (``pip install 'fedhive[ray]'``), imported only when this
backend starts. The run starts (or joins, with ``ray_address``) Ray once, then
``workers`` actors of one CPU each; every actor builds the app once from its
:class:`~fedhive.simulation.app.AppSpec` (as a spawned process worker does) and keeps it.

What crosses to and from the actors is bytes and plain strings and ints, never a pickled
fedhive object: tasks as the gRPC wire's ``Task`` protobuf, outcomes as its
``ResultHeader`` and payload, client state as safetensors records (the encodings of
:mod:`fedhive.simulation.wire` and :mod:`fedhive.core.serde`). The global model goes into
Ray's object store once per version (``ray.put`` of the bytes the round loop's
:class:`~fedhive.core.version.ModelVersion` made); each actor fetches it once per version
and keeps the decoded weights. Per-client state lives in the driver's state store (the
run's :class:`~fedhive.simulation.states.StateStore`, as with the process backend):
shipped with each task, returned with each outcome.

Tasks go to the actors in chunks, two in flight per actor, and outcomes stream back as
chunks complete. An actor that dies fails only its in-flight tasks and is replaced for
the next cohort.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fedhive.client.base import Client, TaskOrigin
from fedhive.client.pipeline import run_evaluate, run_fit
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import EvaluateReply, EvaluateTask, Failure, FitReply, FitTask
from fedhive.core.serde import RecordValue, record_from_bytes, record_to_bytes, weights_from_bytes
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError, TransportError
from fedhive.simulation.app import AppSpec, SimulationApp
from fedhive.simulation.states import MemoryStateStore, StateStore
from fedhive.simulation.wire import outcome_bytes, outcome_from_bytes, task_bytes, task_from_bytes
from fedhive.transport.base import EvaluateOutcome, FitOutcome

_log = logging.getLogger(__name__)
_Task = FitTask | EvaluateTask
_Result = tuple[bytes, bytes, bytes | None]  # ResultHeader, payload, state record (or None)
_CHUNKS_PER_WORKER = 4
_IN_FLIGHT_PER_ACTOR = 2
START_TIMEOUT_S = 120.0
"""How long the actors may take to start (a cluster short of CPUs never starts them)."""


def import_ray() -> Any:
    """The ``ray`` module (Ray's usage statistics off unless the user turned them on).

    Raises:
        ConfigError: Ray is not installed.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls of its own
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            'simulation.backend: "ray" needs Ray, which is not installed: '
            "pip install 'fedhive[ray]'"
        ) from exc
    return ray


class RayActor:
    """One Ray worker: the app built once from its spec, and the latest model's weights.

    Its methods take and return bytes, strings and ints only.
    """

    def __init__(self, spec: str, base_dir: str, params: str, seed: int) -> None:
        self._app = AppSpec(spec, Path(base_dir)).build(json.loads(params), seed)
        self._version = ""
        self._weights: Weights | None = None

    def node_id(self) -> str:
        """The id of the Ray node this actor runs on (and proof that it started)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def run(
        self,
        version: str,
        model: list[Any],
        tasks: list[bytes],
        clients: list[str],
        states: list[bytes | None],
    ) -> list[_Result]:
        """Run a chunk of tasks on model ``version``; ``model`` holds its ObjectRef, in a
        list so that Ray does not fetch it for a chunk of a version this actor holds."""
        if version != self._version:
            import ray

            self._weights = weights_from_bytes(ray.get(model[0]))
            self._version = version
        assert self._weights is not None
        return [
            run_task(self._app, self._weights, client_id, task, state)
            for client_id, task, state in zip(clients, tasks, states, strict=True)
        ]


def run_task(
    app: SimulationApp, weights: Weights, client_id: str, task_blob: bytes, state_blob: bytes | None
) -> _Result:
    """One task, as an actor runs it: decoded from bytes, its outcome and state encoded
    back (the state only when the client has or had one)."""
    task = task_from_bytes(task_blob, client_id=client_id)
    state: dict[str, RecordValue] = record_from_bytes(state_blob) if state_blob is not None else {}
    had_state = bool(state)
    outcome: FitReply | EvaluateReply | Failure
    try:
        client: Client = app.client.client_fn(client_id)
    except Exception as exc:  # the user's factory: this task fails
        outcome = Failure.of(client_id, task.round, Stage.CLIENT_FN, exc)
    else:
        if isinstance(task, FitTask):
            outcome = run_fit(client, task, weights, state, origin=TaskOrigin.simulation(task))
        else:
            outcome = run_evaluate(client, task, weights, state)
    header, payload = outcome_bytes(outcome)
    return header, payload, record_to_bytes(state) if (state or had_state) else None


class RayBackend:
    """Runs client tasks on ``workers`` Ray actors (see the module docstring).

    ``address``: the Ray cluster to join (``"auto"``, ``"host:port"``); None starts a
    local Ray with ``workers`` CPUs, once, when the first cohort runs. A Ray this backend
    started is shut down by :meth:`close`; one it joined, or found running, is left up.
    """

    def __init__(
        self,
        *,
        spec: AppSpec,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
        workers: int = 2,
        address: str | None = None,
        states: StateStore | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"simulation.workers: must be >= 1, got {workers}")
        self._ray = import_ray()
        self._spec, self._seed, self._size, self._address = spec, seed, workers, address
        self._params = json.dumps(dict(params or {}), allow_nan=False)  # plain values cross
        self._actors: dict[int, Any] = {}
        self._next_index = 0
        self._owns_ray = False
        self._model: tuple[str, Any] | None = None  # (version digest, its ObjectRef)
        self._states = MemoryStateStore() if states is None else states
        self.node_ids: list[str] = []
        """The Ray node each live actor runs on (set when the actors start)."""

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        """Run fit tasks across the actors; outcomes stream back as chunks finish."""
        for outcome in self._run(tasks, model):
            if isinstance(outcome, EvaluateReply):
                raise TransportError("a Ray actor answered a fit task with an evaluation")
            yield outcome

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Run evaluate tasks across the actors."""
        for outcome in self._run(tasks, model):
            if isinstance(outcome, FitReply):
                raise TransportError("a Ray actor answered an evaluate task with a fit")
            yield outcome

    def close(self) -> None:
        """Stop the actors, and the Ray this backend started; idempotent."""
        ray = self._ray
        if ray.is_initialized():
            for actor in self._actors.values():
                ray.kill(actor)
        self._actors.clear()
        self._model = None
        self._states.close()
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def _run(
        self, tasks: Sequence[_Task], model: ModelVersion
    ) -> Iterator[FitReply | EvaluateReply | Failure]:
        if not tasks:
            return
        ray = self._ray
        self._ensure_actors()
        ref = self._put(model)
        size = max(1, math.ceil(len(tasks) / (len(self._actors) * _CHUNKS_PER_WORKER)))
        pending = [list(tasks[i : i + size]) for i in range(0, len(tasks), size)][::-1]
        running: dict[Any, tuple[int, list[_Task]]] = {}
        for index in list(self._actors):
            for _ in range(_IN_FLIGHT_PER_ACTOR):
                self._dispatch(index, model.digest, ref, pending, running)
        while running:
            (done,), _ = ray.wait(list(running), num_returns=1)
            index, chunk = running.pop(done)
            try:
                results: list[_Result] = ray.get(done)
            except ray.exceptions.RayActorError as exc:
                self._actors.pop(index, None)  # replaced for the next cohort
                yield from (_lost(t, f"Ray actor died: {type(exc).__name__}") for t in chunk)
                continue
            except ray.exceptions.RayError as exc:
                yield from (_lost(t, f"Ray task failed: {_summary(exc)}") for t in chunk)
                self._dispatch(index, model.digest, ref, pending, running)
                continue
            self._dispatch(index, model.digest, ref, pending, running)
            for task, (header, payload, state) in zip(chunk, results, strict=True):
                if state is not None:  # None: the client has no state
                    self._states.put(task.client_id, state)
                yield outcome_from_bytes(header, payload)
        for rest in pending:  # every actor died: the rest cannot run
            yield from (_lost(task, "no live Ray actor left") for task in rest)

    def _dispatch(
        self,
        index: int,
        version: str,
        model: Any,
        pending: list[list[_Task]],
        running: dict[Any, tuple[int, list[_Task]]],
    ) -> None:
        if not pending or index not in self._actors:
            return
        chunk = pending.pop()
        blobs = [task_bytes(task) for task in chunk]
        clients = [task.client_id for task in chunk]
        future = self._actors[index].run.remote(
            version, [model], blobs, clients, [self._states.get(task.client_id) for task in chunk]
        )
        running[future] = (index, chunk)

    def _put(self, model: ModelVersion) -> Any:
        """The ObjectRef of ``model``'s bytes: put into the object store once per version."""
        if self._model is None or self._model[0] != model.digest:
            self._model = (model.digest, self._ray.put(model.data))
        return self._model[1]

    def _ensure_actors(self) -> None:
        """Start Ray (once per run) and as many actors as are missing."""
        ray = self._ray
        if not ray.is_initialized():
            if self._address is None:
                # "local": a new Ray, never one a `ray start` left running here
                ray.init(address="local", num_cpus=self._size, include_dashboard=False)
            else:
                ray.init(address=self._address, include_dashboard=False)
            self._owns_ray = True
        missing = self._size - len(self._actors)
        if missing <= 0:
            return
        remote = ray.remote(num_cpus=1, max_restarts=0)(RayActor)
        args = (self._spec.spec, str(self._spec.base_dir), self._params, self._seed)
        for _ in range(missing):
            self._actors[self._next_index] = remote.remote(*args)
            self._next_index += 1
        try:
            nodes = ray.get(
                [actor.node_id.remote() for actor in self._actors.values()],
                timeout=START_TIMEOUT_S,
            )
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise TransportError(
                f"{self._size} Ray actors of 1 CPU each did not start within "
                f"{START_TIMEOUT_S:.0f} s: does the cluster have {self._size} free CPUs?"
            ) from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise TransportError(f"a Ray actor failed to start: {_summary(exc)}") from exc
        self.node_ids = [str(node) for node in nodes]
        _log.info(
            "ray backend: %d actors on %d node(s)", len(self.node_ids), len(set(self.node_ids))
        )


def _summary(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _lost(task: _Task, message: str) -> Failure:
    return Failure(
        client_id=task.client_id,
        round=task.round,
        stage=Stage.TRANSPORT,
        kind=FailureKind.TRANSPORT,
        message=message,
    )
