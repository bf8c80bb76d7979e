"""A virtual clock for simulated runs: when each task ends on its simulated device.

:class:`VirtualClockRunner` is the simulation's
:class:`~fedhive.server.asynchronous.AsyncRunner`: a submitted task ends at the clock
time of its submission plus its duration on the device model, and the clock jumps from
one ending to the next. Outcomes are computed lazily and in batches: when an ending
task's outcome is needed, every waiting task that trained on the same model version is
run as one cohort through the wrapped :class:`~fedhive.transport.base.CohortRunner`
(in parallel on the process backend). A task's result depends only on its seed, its
model and its client's state, so runs are identical whatever the backend or batching.
Outcomes computed ahead of their end are held until then (O(concurrency x model)).

For synchronous runs, :class:`RoundTimer` times each round's fit cohort (its slowest
client) and :class:`ClockObserver` stamps the cumulative time on each round's record.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator, Mapping, Sequence

from fedhive.core.messages import EvaluateTask, FitTask
from fedhive.core.version import ModelVersion
from fedhive.server.asynchronous import Finished
from fedhive.server.history import RoundRecord
from fedhive.server.run import RunObserver
from fedhive.simulation.devices import DeviceModel, synchronous_round_time
from fedhive.transport.base import CohortRunner, EvaluateOutcome, FitOutcome
from fedhive.transport.inprocess import InProcessTransport


class VirtualClockRunner:
    """Runs submitted fit tasks on simulated devices, in the order they would end.

    Ties end together, in dispatch order. A client's tasks are computed in dispatch
    order as long as it never has two at once (the asynchronous loop's guarantee).
    """

    def __init__(
        self, *, runner: CohortRunner, client_ids: Sequence[str], devices: DeviceModel
    ) -> None:
        # The in-process transport guarantees one outcome per task, whatever the runner.
        self._transport = InProcessTransport(client_ids=client_ids, runner=runner)
        self._devices = devices
        self._now = 0.0
        self._ends: list[tuple[float, int]] = []  # heap of (end time, dispatch)
        self._waiting: dict[int, FitTask] = {}  # submitted, not computed yet
        self._models: dict[str, ModelVersion] = {}  # the versions waiting tasks train on
        self._done: dict[int, FitOutcome] = {}  # computed, not ended yet

    @property
    def now(self) -> float:
        """Simulated seconds since the first submission."""
        return self._now

    def client_ids(self) -> Sequence[str]:
        """Every simulated client."""
        return self._transport.client_ids()

    def submit(self, dispatch: int, task: FitTask, model: ModelVersion) -> None:
        """Start ``task`` now; it ends after its duration on the client's device."""
        end = self._now + self._devices.duration(task.client_id, task.config, dispatch)
        heapq.heappush(self._ends, (end, dispatch))
        self._waiting[dispatch] = task
        self._models.setdefault(task.version, model)

    def next_finished(self) -> list[Finished]:
        """Advance the clock to the next end; every task ending then, in dispatch order."""
        if not self._ends:
            return []
        self._now = self._ends[0][0]
        ending: list[int] = []
        while self._ends and self._ends[0][0] == self._now:
            ending.append(heapq.heappop(self._ends)[1])
        finished = []
        for dispatch in ending:
            if dispatch not in self._done:
                self._compute(self._waiting[dispatch].version)
            finished.append(Finished(dispatch, self._done.pop(dispatch), self._now))
        return finished

    def close(self) -> None:
        """Close the wrapped runner."""
        self._transport.close()

    def _compute(self, version: str) -> None:
        """Run every waiting task on ``version``: as one cohort, unless a client has
        several (then one cohort per task of it, in dispatch order)."""
        model = self._models.pop(version)
        dispatches = sorted(d for d, task in self._waiting.items() if task.version == version)
        while dispatches:
            cohort: dict[str, int] = {}
            later: list[int] = []
            for dispatch in dispatches:
                client = self._waiting[dispatch].client_id
                if client in cohort:
                    later.append(dispatch)
                else:
                    cohort[client] = dispatch
            tasks = [self._waiting.pop(d) for d in cohort.values()]
            for outcome in self._transport.fit(tasks, model):
                self._done[cohort[outcome.client_id]] = outcome
            dispatches = later


class RoundTimer:
    """A CohortRunner that times each round's fit cohort on the device model."""

    def __init__(self, runner: CohortRunner, devices: DeviceModel) -> None:
        self._runner = runner
        self._devices = devices
        self.round_seconds: dict[int, float] = {}

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        """Time the cohort (its slowest task; task index = round), then run it."""
        for task in tasks:
            seconds = self._devices.fit_seconds(task)
            previous = self.round_seconds.get(task.round, 0.0)
            self.round_seconds[task.round] = synchronous_round_time((previous, seconds))
        return self._runner.fit(tasks, model)

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Evaluation is not timed."""
        return self._runner.evaluate(tasks, model)

    def close(self) -> None:
        """Close the wrapped runner."""
        self._runner.close()


class ClockObserver:
    """A RunObserver that stamps each round's record with the cumulative round time: its
    slowest client's, or when its cohort closed at its quorum (``closed_at``)."""

    def __init__(
        self,
        inner: RunObserver | None,
        timer: RoundTimer,
        *,
        closed_at: Mapping[int, float] | None = None,
    ) -> None:
        self._inner = inner
        self._timer = timer
        self._closed_at = {} if closed_at is None else closed_at
        self._clock = 0.0
        self.clocks: dict[int, float] = {}

    def round_started(self, round: int, num_tasks: int) -> None:
        """Pass on."""
        if self._inner is not None:
            self._inner.round_started(round, num_tasks)

    def client_finished(self, round: int, ok: bool) -> None:
        """Pass on."""
        if self._inner is not None:
            self._inner.client_finished(round, ok)

    def round_finished(self, record: RoundRecord) -> None:
        """Add the round's time to the clock and pass on the stamped record."""
        seconds = self._timer.round_seconds.get(record.round, 0.0)
        self._clock += min(seconds, self._closed_at.get(record.round, seconds))
        self.clocks[record.round] = self._clock
        if self._inner is not None:
            self._inner.round_finished(self.stamp(record))

    def stamp(self, record: RoundRecord) -> RoundRecord:
        """``record`` with its clock."""
        return dataclasses.replace(record, clock=self.clocks.get(record.round))
