"""The asynchronous (FedBuff) loop: staleness, verification, refills and records."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
import pytest

import lstsq_app
from fedhive.config.simulated import DeviceDistribution, DevicesSection
from fedhive.core.messages import ClientConfig, FitReply, FitTask
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError
from fedhive.server.asynchronous import AsyncLoop, Finished
from fedhive.server.history import RoundRecord
from fedhive.server.verify import ReplyPolicy
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.clock import VirtualClockRunner
from fedhive.simulation.devices import DeviceModel
from fedhive.strategy import BufferState, StrategyState, fedbuff

MODEL = Weights({"w": np.zeros(2)})


class ScriptedRunner:
    """Each client takes a fixed time per task and moves every weight by +1.

    ``bad`` clients answer for the wrong round, ``huge`` ones move by 2**31 instead; each
    claims ``examples``. It records what it was given.
    """

    def __init__(
        self,
        delays: dict[str, float],
        bad: Sequence[str] = (),
        huge: Sequence[str] = (),
        examples: int = 1,
    ) -> None:
        self.delays, self.bad, self.huge = delays, set(bad), set(huge)
        self.examples = examples
        self.now = 0.0
        self.ends: list[tuple[float, int, FitTask]] = []
        self.running: set[str] = set()
        self.most_running = 0

    def client_ids(self) -> Sequence[str]:
        return sorted(self.delays)

    def submit(self, dispatch: int, task: FitTask, model: ModelVersion) -> None:
        assert task.client_id not in self.running, "a client got two tasks at once"
        self.running.add(task.client_id)
        self.most_running = max(self.most_running, len(self.running))
        heapq.heappush(self.ends, (self.now + self.delays[task.client_id], dispatch, task))

    def next_finished(self) -> list[Finished]:
        if not self.ends:
            return []
        self.now = self.ends[0][0]
        out = []
        while self.ends and self.ends[0][0] == self.now:
            _, dispatch, task = heapq.heappop(self.ends)
            self.running.discard(task.client_id)
            reply = FitReply(
                client_id=task.client_id,
                round=task.round + (task.client_id in self.bad),
                version=task.version,
                update=Weights({"w": np.full(2, 2.0**31 if task.client_id in self.huge else 1.0)}),
                num_examples=self.examples,
            )
            out.append(Finished(dispatch, reply, self.now))
        return out

    def close(self) -> None:
        pass


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def round_started(self, round: int, num_tasks: int) -> None:
        self.events.append(("started", round))

    def client_finished(self, round: int, ok: bool) -> None:
        self.events.append(("client", round))

    def round_finished(self, record: RoundRecord) -> None:
        self.events.append(("finished", record.round))

    def begin(self, round: int) -> None:
        self.events.append(("begin", round))

    def end(self, record: RoundRecord, model: ModelVersion, state: StrategyState) -> None:
        self.events.append(("end", record.round))


def loop(runner: object, **settings: object) -> AsyncLoop:
    strategy = fedbuff(**{"buffer_size": 1, "concurrency": 2, **settings})  # type: ignore[arg-type]
    return AsyncLoop(strategy=strategy, runner=runner, seed=0)  # type: ignore[arg-type]


def test_staleness_counts_the_versions_committed_since_the_task_started() -> None:
    # fast ends at t = 1, 2, 3, ...; slow (started on version 0) ends at t = 3, before
    # fast's third task (a tie: slow was dispatched first), when 2 versions exist.
    runner = ScriptedRunner({"fast": 1.0, "slow": 3.0})
    result = loop(runner).run(MODEL, rounds=5)
    assert [r.train["staleness_max"] for r in result.history] == [0.0, 0.0, 2.0, 1.0, 0.0]
    assert [r.fit.contributors for r in result.history][2:4] == [["slow"], ["fast"]]
    assert [r.clock for r in result.history] == [1.0, 2.0, 3.0, 3.0, 4.0]
    np.testing.assert_array_equal(result.weights["w"], [5.0, 5.0])  # one +1 per version
    assert result.state.of(BufferState).version == 5


def test_too_stale_updates_are_discarded_and_counted() -> None:
    runner = ScriptedRunner({"fast": 1.0, "slow": 3.0})
    result = loop(runner, max_staleness=1).run(MODEL, rounds=4)
    assert [r.fit.contributors for r in result.history] == [["fast"]] * 4
    assert result.history[2].fit.failures == {"buffer:stale": 1}
    assert all(r.train["staleness_max"] == 0.0 for r in result.history)


def test_rejected_replies_are_failures_and_their_slot_is_refilled() -> None:
    runner = ScriptedRunner({"a": 1.0, "b": 1.5, "liar": 0.5}, bad=["liar"])
    result = loop(runner, buffer_size=2, concurrency=3).run(MODEL, rounds=3)
    assert all(r.committed for r in result.history)
    assert all(set(r.fit.contributors) <= {"a", "b"} for r in result.history)
    assert sum(r.fit.failures["verify:validation"] for r in result.history) >= 3
    assert runner.most_running == 3


def test_one_huge_update_fails_its_client_not_the_buffer() -> None:
    # F01: evil's finite 2**31 made the buffer's exact sum raise, and the loop dropped the
    # whole buffer of honest updates ("version not committed")
    runner = ScriptedRunner({"a": 1.0, "b": 1.0, "evil": 1.0}, huge=["evil"])
    result = loop(runner, buffer_size=2, concurrency=3).run(MODEL, rounds=3)
    assert all(r.committed for r in result.history), [r.note for r in result.history]
    assert all(set(r.fit.contributors) <= {"a", "b"} for r in result.history)
    assert sum(r.fit.failures["verify:validation"] for r in result.history) >= 2
    np.testing.assert_array_equal(result.weights["w"], [3.0, 3.0])  # one +1 per version


@pytest.mark.parametrize(("cap", "committed"), [(2, True), (1, False)])
def test_the_async_loop_applies_its_policy_cap(cap: int, committed: bool) -> None:
    runner = ScriptedRunner({"a": 1.0, "b": 1.0}, examples=2)
    strategy = fedbuff(buffer_size=1, concurrency=2)
    policy = ReplyPolicy(max_examples=cap)
    result = AsyncLoop(strategy=strategy, runner=runner, seed=0, policy=policy).run(MODEL, 1)
    assert result.history[0].committed is committed


def test_a_run_where_every_task_fails_still_ends() -> None:
    runner = ScriptedRunner({"x": 1.0, "y": 2.0}, bad=["x", "y"])
    result = loop(runner, buffer_size=2).run(MODEL, rounds=2)
    assert [r.committed for r in result.history] == [False, False]
    assert "in a row failed" in result.history[0].note
    np.testing.assert_array_equal(result.weights["w"], [0.0, 0.0])


def test_too_few_clients_are_recorded_not_raised() -> None:
    runner = ScriptedRunner({"a": 1.0})
    strategy = fedbuff(min_available_clients=3)
    result = AsyncLoop(strategy=strategy, runner=runner, seed=0).run(MODEL, rounds=2)  # type: ignore[arg-type]
    assert [r.committed for r in result.history] == [False, False]
    assert "needs at least 3" in result.history[0].note


def test_observer_and_checkpoint_see_every_version() -> None:
    recorder = Recorder()
    runner = ScriptedRunner({"a": 1.0, "b": 2.0})
    strategy = fedbuff(buffer_size=1, concurrency=2)
    looped = AsyncLoop(
        strategy=strategy,
        runner=runner,  # type: ignore[arg-type]
        seed=0,
        observer=recorder,
        checkpoint=recorder,
        evaluate_fn=lambda w: {"norm": float(np.linalg.norm(w["w"]))},
    )
    result = looped.run(MODEL, rounds=2)
    assert recorder.events == [
        ("begin", 1),
        ("started", 1),
        ("client", 1),
        ("end", 1),
        ("finished", 1),
        ("begin", 2),
        ("started", 2),
        ("client", 2),
        ("end", 2),
        ("finished", 2),
    ]
    assert result.history[1].centralized["norm"] == pytest.approx(np.sqrt(8))


def test_a_resumed_run_continues_from_the_state_version() -> None:
    first = loop(ScriptedRunner({"a": 1.0, "b": 1.0})).run(MODEL, rounds=3)
    second = loop(ScriptedRunner({"a": 1.0, "b": 1.0})).run(first.weights, 2, first.state)
    assert [r.round for r in second.history] == [4, 5]
    assert second.state.of(BufferState).version == 5
    np.testing.assert_array_equal(second.weights["w"], [5.0, 5.0])


def test_parameter_names_with_the_reserved_prefix_are_refused() -> None:
    with pytest.raises(ConfigError, match="may not start with"):
        loop(ScriptedRunner({"a": 1.0})).run(Weights({"@w": np.zeros(1)}), rounds=1)


class GuardedClock(VirtualClockRunner):
    """The virtual clock, checking that no client ever has two tasks at once."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.busy: set[str] = set()
        self.clients_of: dict[int, str] = {}
        self.most = 0

    def submit(self, dispatch: int, task: FitTask, model: ModelVersion) -> None:
        assert task.client_id not in self.busy
        self.busy.add(task.client_id)
        self.most = max(self.most, len(self.busy))
        self.clients_of[dispatch] = task.client_id
        super().submit(dispatch, task, model)

    def next_finished(self) -> list[Finished]:
        finished = super().next_finished()
        for item in finished:
            self.busy.discard(self.clients_of[item.dispatch])
        return finished


def test_the_loop_on_simulated_devices_never_doubles_up_a_client() -> None:
    app = lstsq_app.build(12)
    devices = DevicesSection(distribution=DeviceDistribution.PARETO, alpha=1.2, jitter=0.5)
    clock = GuardedClock(
        runner=LocalBackend(app.client.client_fn),
        client_ids=app.client_ids,
        devices=DeviceModel(devices, seed=1),
    )
    strategy = fedbuff(client_config=ClientConfig(learning_rate=0.05), buffer_size=2, concurrency=6)
    result = AsyncLoop(strategy=strategy, runner=clock, seed=1).run(app.server.initial_weights, 40)
    assert clock.most == 6
    # 6 to start, then one refill per ended task but the last (the run stops there)
    assert len(clock.clients_of) == 6 + 40 * 2 - 1
    assert all(r.fit.succeeded == 2 for r in result.history)
    clocks = [r.clock or 0.0 for r in result.history]
    assert clocks == sorted(clocks)
    assert clocks[-1] > 0
