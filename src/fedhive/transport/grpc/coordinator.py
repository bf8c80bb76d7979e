"""The server's side of the wire, without the wire: who is connected, which tasks wait
for whom, which results have come back. Thread-safe; the gRPC servicer calls into it
from its worker threads and the round loop reads outcomes from it.

A round publishes one model for its cohort, replacing the last. Asynchronous tasks train
on different versions at once: each is published as a one-task cohort with ``keep`` (its
model joins those published), and a model is dropped once no unanswered task names it.

Memory follows the tasks in flight, not the run's length: once a cohort closes, the ids
of its tasks are kept a while (a late upload is told ``ROUND_CLOSED``, a repeat
``DUPLICATE``) and then forgotten (such an upload is then refused as naming no issued
task). Either way it is refused: task ids are random and never issued twice.

An upload refused before its task was claimed (its signature did not verify) leaves the
task open for its owner to retry; the task keeps that refusal (the last one, one per
open task) and reports it if its cohort closes without a valid upload.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from fedhive.core.messages import (
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    SecAggAnswer,
    SecAggReply,
    SecAggTask,
)
from fedhive.errors import StateError
from fedhive.transport.codec import TaskEnvelope, UploadStatus
from fedhive.transport.downlink import Downlink, Download

Outcome = FitReply | EvaluateReply | SecAggReply | SecAggAnswer | Failure


class UploadRefusedError(Exception):
    """Why an upload is refused: carries the status the client is told."""

    def __init__(self, status: UploadStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Issued:
    envelope: TaskEnvelope
    cohort: int
    refused: Failure | None = None  # the last upload refused while the task stayed open


@dataclass(frozen=True)
class Withdrawn:
    """A task its cohort closed without a result, and the last upload refused for it."""

    envelope: TaskEnvelope
    refused: Failure | None


@dataclass(frozen=True)
class RunStatus:
    """What the Status RPC answers: the run, its round, the last version and metrics."""

    run_id: str
    round: int
    latest_version: str
    latest_metrics: Mapping[str, float]


class Coordinator:
    """Shared state between the servicer threads and the round loop.

    The run's id and the status it shows change only through :meth:`name_run` and
    :meth:`publish_status`, under the lock the servicer threads read them with.
    """

    def __init__(
        self,
        run_id: str,
        *,
        heartbeat_timeout: float = 30.0,
        remember_tasks: int = 10_000,
        downlink: Downlink | None = None,
    ) -> None:
        self.downlink = downlink or Downlink(delta=False)
        """What a download streams: the model, or a delta against the client's."""
        self.heartbeat_timeout = heartbeat_timeout
        self.remember_tasks = remember_tasks
        """Ids of closed cohorts' tasks kept for their refusal's reason (the newest
        cohort's always)."""
        self._lock = threading.Lock()
        self._run_id = run_id
        self._seen: dict[str, float] = {}
        self._pending: dict[str, deque[TaskEnvelope]] = {}
        self._issued: dict[str, _Issued] = {}
        self._cohort_tasks: dict[int, list[str]] = {}  # open cohorts
        self._refusals: dict[str, UploadStatus] = {}  # task id -> verdict
        self._retired: deque[list[str]] = deque()  # closed cohorts' ids
        self._models: dict[str, bytes] = {}
        self._downloads: dict[tuple[str, str], int] = {}  # (client, version) -> bytes sent
        # Bounded: an upload handler waits (holding its one update) while the round loop
        # is behind, so memory grows with the server's worker threads, not the clients.
        self._outcomes: queue.Queue[tuple[int, Outcome]] = queue.Queue(maxsize=8)
        self._open_cohorts: set[int] = set()
        self._cohort = 0
        self.round = 0
        self.finished = False
        self._latest_version = ""
        self._latest_metrics: dict[str, float] = {}

    @property
    def run_id(self) -> str:
        """The run the tasks and the Status answer name."""
        with self._lock:
            return self._run_id

    def name_run(self, run_id: str) -> None:
        """Serve the run ``run_id`` (a resumed run keeps its id), before any task names
        the one this coordinator was made with.

        Raises:
            StateError: a cohort was published already (its tasks name the old id).
        """
        with self._lock:
            if self._cohort:
                raise StateError(f"run {self._run_id!r}: tasks were issued; it keeps its id")
            self._run_id = run_id

    def publish_status(self, *, version: str, metrics: Mapping[str, float]) -> None:
        """Show ``version`` (the model the last round made) and its ``metrics`` in the
        Status answer."""
        with self._lock:
            self._latest_version = version
            self._latest_metrics = dict(metrics)

    def status(self) -> RunStatus:
        """The Status answer's run, round, latest version and metrics, read together."""
        with self._lock:
            return RunStatus(
                run_id=self._run_id,
                round=self.round,
                latest_version=self._latest_version,
                latest_metrics=dict(self._latest_metrics),
            )

    def touch(self, client_id: str) -> None:
        """Record that ``client_id`` is alive (registration, heartbeat, any call)."""
        with self._lock:
            self._seen[client_id] = time.monotonic()

    def forget(self, client_id: str) -> None:
        """Mark a client as gone (it said goodbye or its connection broke)."""
        with self._lock:
            self._seen.pop(client_id, None)

    def live_clients(self) -> list[str]:
        """Clients heard from within the heartbeat timeout, sorted."""
        horizon = time.monotonic() - self.heartbeat_timeout
        with self._lock:
            return sorted(c for c, seen in self._seen.items() if seen >= horizon)

    def model(self, version: str) -> bytes | None:
        """The published model bytes of ``version`` (None if not published)."""
        with self._lock:
            return self._models.get(version)

    def download(self, version: str, base: str) -> Download | None:
        """What to stream a client that asks for ``version`` holding ``base`` ("": no
        model): see :class:`~fedhive.transport.downlink.Downlink`. None if ``version``
        is not published."""
        with self._lock:
            model = self._models.get(version)
        return None if model is None else self.downlink.download(version, model, base)

    def versions(self) -> list[str]:
        """The versions whose models are published now, sorted."""
        with self._lock:
            return sorted(self._models)

    def publish(
        self,
        tasks: Sequence[FitTask] | Sequence[EvaluateTask] | Sequence[SecAggTask],
        payload: bytes,
        deadline: float,
        *,
        sign: Callable[[TaskEnvelope], bytes] | None = None,
        keep: bool = False,
        secagg: Mapping[str, bytes] | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Queue one task per client for pulling; return the cohort id and task ids.

        The tasks' model replaces the published ones, or joins them with ``keep``;
        ``secagg`` gives each client its secure-aggregation message (SecAgg tasks name
        no model); ``sign`` gives each task its model signature.
        """
        envelopes = []
        for task in tasks:
            envelope = TaskEnvelope(
                task=task,
                task_id=uuid.uuid4().hex,
                run_id=self._run_id,
                deadline_unix=deadline,
                model_size=len(payload),
                secagg=(secagg or {}).get(task.client_id, b""),
            )
            if sign is not None:
                envelope = replace(envelope, model_signature=sign(envelope))
            envelopes.append(envelope)
        with self._lock:
            self._cohort += 1
            cohort = self._cohort
            self._open_cohorts.add(cohort)
            if tasks and not isinstance(tasks[0], SecAggTask):
                version = tasks[0].version
                if not keep:
                    self._models = {}
                    self._downloads = {k: n for k, n in self._downloads.items() if k[1] == version}
                self._models[version] = payload
                self.downlink.published(version, payload)
                for task in tasks:  # a new task counts its client's download afresh
                    self._downloads.pop((task.client_id, version), None)
                self.round = tasks[0].round
            for envelope in envelopes:
                self._pending.setdefault(envelope.task.client_id, deque()).append(envelope)
                self._issued[envelope.task_id] = _Issued(envelope, cohort)
            ids = {envelope.task_id: envelope.task.client_id for envelope in envelopes}
            self._cohort_tasks[cohort] = list(ids)
            return cohort, ids

    def count_download(self, client_id: str, version: str, size: int) -> None:
        """Note ``size`` bytes of model ``version`` sent to ``client_id``."""
        with self._lock:
            key = (client_id, version)
            self._downloads[key] = self._downloads.get(key, 0) + size

    def downloaded(self, client_id: str, version: str) -> int:
        """Bytes of model ``version`` sent to ``client_id`` since its task was published."""
        with self._lock:
            return self._downloads.get((client_id, version), 0)

    @property
    def remembered_tasks(self) -> int:
        """How many task ids are held (issued, answered or withdrawn, not yet forgotten)."""
        with self._lock:
            return len(self._issued) + len(self._refusals)

    def drop_model(self, version: str) -> bool:
        """Unpublish ``version`` unless a task not yet answered names it; whether it went."""
        with self._lock:
            if any(i.envelope.task.version == version for i in self._issued.values()):
                return False
            self._downloads = {k: v for k, v in self._downloads.items() if k[1] != version}
            return self._models.pop(version, None) is not None

    def pull(self, client_id: str) -> TaskEnvelope | None:
        """The next task waiting for ``client_id``, if any."""
        with self._lock:
            waiting = self._pending.get(client_id)
            return waiting.popleft() if waiting else None

    def issued(self, task_id: str, client_id: str) -> TaskEnvelope:
        """The open task ``task_id`` of ``client_id``, without claiming it (check its
        result's signature first, then :meth:`claim` it).

        Raises:
            UploadRefusedError: unknown task, another client's task, closed or duplicate.
        """
        with self._lock:
            return self._open_task(task_id, client_id).envelope

    def claim(self, task_id: str, client_id: str) -> tuple[TaskEnvelope, int]:
        """Take the issued task ``task_id`` (and its cohort) for its result, once.

        Raises:
            UploadRefusedError: unknown task, another client's task, closed or duplicate.
        """
        with self._lock:
            issued = self._open_task(task_id, client_id)
            del self._issued[task_id]
            self._refusals[task_id] = UploadStatus.DUPLICATE
            return issued.envelope, issued.cohort

    def refuse(self, task_id: str, failure: Failure) -> None:
        """Note why an upload for the open task ``task_id`` was refused without claiming
        it (the task's failure if no valid upload follows); a closed task is ignored."""
        with self._lock:
            issued = self._issued.get(task_id)
            if issued is not None:
                issued.refused = failure

    def _open_task(self, task_id: str, client_id: str) -> _Issued:
        issued = self._issued.get(task_id)
        if issued is None:
            status = self._refusals.get(task_id)
            if status is UploadStatus.DUPLICATE:
                raise UploadRefusedError(status, "this task's result was received")
            if status is UploadStatus.ROUND_CLOSED:
                raise UploadRefusedError(status, "the task's round has closed")
            raise UploadRefusedError(UploadStatus.REJECTED, "no such task was issued")
        if issued.envelope.task.client_id != client_id:
            raise UploadRefusedError(
                UploadStatus.REJECTED, "this task was issued to another client"
            )
        return issued

    def deliver(self, cohort: int, outcome: Outcome) -> bool:
        """Hand a claimed task's outcome to the round loop, waiting while it is behind.

        Returns:
            False if the cohort closed before the round loop could take it.
        """
        while True:
            with self._lock:
                if cohort not in self._open_cohorts:
                    return False
            try:
                self._outcomes.put((cohort, outcome), timeout=0.2)
                return True
            except queue.Full:
                continue

    def outcomes(self, cohort: int, expected: int, deadline: float) -> Iterator[Outcome]:
        """Yield outcomes of ``cohort`` until ``expected`` arrived or ``deadline`` passed."""
        received = 0
        while received < expected:
            remaining = deadline - time.time()
            if remaining <= 0:
                return
            try:
                got, outcome = self._outcomes.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if got == cohort:
                received += 1
                yield outcome

    def next_outcome(self, cohorts: Collection[int], deadline: float) -> tuple[int, Outcome] | None:
        """The next outcome of any of ``cohorts`` (with its cohort), or None once
        ``deadline`` (unix time) has passed; outcomes already in hand come first.

        Outcomes of other cohorts (closed ones: their tasks were withdrawn) are dropped.
        """
        while True:
            remaining = deadline - time.time()
            try:
                got, outcome = self._outcomes.get(
                    block=remaining > 0, timeout=max(0.0, min(remaining, 0.5))
                )
            except queue.Empty:
                if remaining <= 0:
                    return None
                continue
            if got in cohorts:
                return got, outcome

    def close_cohort(self, cohort: int) -> list[Withdrawn]:
        """Close the cohort: unanswered tasks are withdrawn and returned."""
        with self._lock:
            self._open_cohorts.discard(cohort)
            open_ = [t for t, i in self._issued.items() if i.cohort == cohort]
            withdrawn = [Withdrawn(i.envelope, i.refused) for i in map(self._issued.pop, open_)]
            self._refusals.update(dict.fromkeys(open_, UploadStatus.ROUND_CLOSED))
            for waiting in self._pending.values():
                for envelope in [e for e in waiting if e.task_id in open_]:
                    waiting.remove(envelope)
            self._retire(cohort)
            return withdrawn

    def _retire(self, cohort: int) -> None:
        """Keep a closed cohort's task ids; forget the oldest beyond ``remember_tasks``."""
        ids = self._cohort_tasks.pop(cohort, None)
        if ids is None:
            return
        self._retired.append(ids)
        while len(self._refusals) > self.remember_tasks and len(self._retired) > 1:
            for task_id in self._retired.popleft():
                self._refusals.pop(task_id, None)
