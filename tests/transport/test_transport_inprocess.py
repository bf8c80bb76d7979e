"""The in-process transport keeps its contract whatever the runner does: exactly one
outcome per task, answered ones passed through, the rest failed at stage "transport"."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    ClientConfig,
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
)
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.transport.base import EvaluateOutcome, FitOutcome, Quorum
from fedhive.transport.downlink import Downlink
from fedhive.transport.inprocess import InProcessTransport

MODEL = Weights({"w": np.zeros(2, np.float32)})
VERSION = ModelVersion.of(MODEL)
CLIENTS = ("a", "b", "c", "d")


def fit_tasks(ids: Sequence[str] = CLIENTS, rnd: int = 5) -> list[FitTask]:
    return [
        FitTask(round=rnd, client_id=c, version="v1", seed=i, config=ClientConfig())
        for i, c in enumerate(ids)
    ]


def eval_tasks(ids: Sequence[str] = CLIENTS, rnd: int = 5) -> list[EvaluateTask]:
    return [
        EvaluateTask(round=rnd, client_id=c, version="v1", seed=i, config=ClientConfig())
        for i, c in enumerate(ids)
    ]


def fit_reply(task: FitTask, n: int = 10) -> FitReply:
    return FitReply(
        client_id=task.client_id,
        round=task.round,
        version=task.version,
        update=MODEL,
        num_examples=n,
    )


def eval_reply(task: EvaluateTask) -> EvaluateReply:
    return EvaluateReply(client_id=task.client_id, round=task.round, loss=0.5, num_examples=3)


class FakeRunner:
    """Answers tasks in the order ``plan`` gives (indices into the task list)."""

    def __init__(
        self,
        plan: Callable[[int], list[int]] | None = None,
        *,
        fail_after: int | None = None,
        fail_on_call: bool = False,
    ) -> None:
        self.plan = plan or (lambda n: list(range(n)))
        self.fail_after = fail_after
        self.fail_on_call = fail_on_call
        self.closed = 0
        self.calls: list[tuple[int, ModelVersion]] = []

    def _run(self, tasks: Sequence, reply: Callable) -> Iterator:
        for count, index in enumerate(self.plan(len(tasks))):
            if self.fail_after is not None and count == self.fail_after:
                raise RuntimeError("worker 3 died")
            yield reply(tasks[index])

    def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
        self.calls.append((len(tasks), model))
        if self.fail_on_call:
            raise OSError("cannot start workers")
        return self._run(tasks, fit_reply)

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        self.calls.append((len(tasks), model))
        return self._run(tasks, eval_reply)

    def close(self) -> None:
        self.closed += 1


def transport(runner: FakeRunner) -> InProcessTransport:
    return InProcessTransport(client_ids=CLIENTS, runner=runner)


def test_client_ids_are_all_simulated_clients() -> None:
    assert list(transport(FakeRunner()).client_ids()) == list(CLIENTS)


def test_exactly_one_outcome_per_task_passed_through_in_completion_order() -> None:
    runner = FakeRunner(lambda n: [2, 0, 3, 1])
    tasks = fit_tasks()
    outcomes = list(transport(runner).fit(tasks, VERSION))
    assert [o.client_id for o in outcomes] == ["c", "a", "d", "b"]
    assert all(isinstance(o, FitReply) for o in outcomes)
    assert outcomes[0] == fit_reply(tasks[2])
    assert runner.calls == [(4, VERSION)]


def test_skipped_task_becomes_a_transport_failure() -> None:
    outcomes = list(transport(FakeRunner(lambda n: [0, 2])).fit(fit_tasks(rnd=7), VERSION))
    assert len(outcomes) == 4
    replies = [o for o in outcomes if isinstance(o, FitReply)]
    failures = [o for o in outcomes if isinstance(o, Failure)]
    assert [r.client_id for r in replies] == ["a", "c"]
    assert sorted(f.client_id for f in failures) == ["b", "d"]
    for failure in failures:
        assert failure.stage == "transport"
        assert failure.round == 7
        assert failure.kind is FailureKind.TRANSPORT
        assert "no reply" in failure.message


def test_duplicate_reply_is_passed_only_once() -> None:
    outcomes = list(transport(FakeRunner(lambda n: [0, 1, 1, 0, 2, 3])).fit(fit_tasks(), VERSION))
    assert sorted(o.client_id for o in outcomes) == list(CLIENTS)
    assert all(isinstance(o, FitReply) for o in outcomes)


def test_runner_raising_midway_fails_only_the_unanswered_tasks() -> None:
    runner = FakeRunner(lambda n: [3, 1, 0, 2], fail_after=2)
    outcomes = list(transport(runner).fit(fit_tasks(), VERSION))
    assert len(outcomes) == 4
    assert [o.client_id for o in outcomes[:2]] == ["d", "b"]
    assert all(isinstance(o, FitReply) for o in outcomes[:2])
    failures = outcomes[2:]
    assert sorted(f.client_id for f in failures) == ["a", "c"]
    for failure in failures:
        assert isinstance(failure, Failure)
        assert failure.stage == "transport"
        assert "RuntimeError" in failure.message
        assert "worker 3 died" in failure.message


def test_runner_raising_at_once_fails_every_task() -> None:
    outcomes = list(transport(FakeRunner(fail_on_call=True)).fit(fit_tasks(), VERSION))
    assert sorted(o.client_id for o in outcomes) == list(CLIENTS)
    assert all(isinstance(o, Failure) and "cannot start workers" in o.message for o in outcomes)


def test_replies_for_unknown_clients_are_dropped() -> None:
    class Stranger(FakeRunner):
        def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
            yield fit_reply(fit_tasks(["zz"])[0])
            yield from super().fit(tasks, model)

    outcomes = list(transport(Stranger()).fit(fit_tasks(), VERSION))
    assert sorted(o.client_id for o in outcomes) == list(CLIENTS)


def test_runner_failures_pass_through_as_the_outcome() -> None:
    class Failing(FakeRunner):
        def fit(self, tasks: Sequence[FitTask], model: ModelVersion) -> Iterator[FitOutcome]:
            for task in tasks:
                yield Failure(
                    client_id=task.client_id,
                    round=task.round,
                    stage=Stage.FIT,
                    kind=FailureKind.CLIENT_ERROR,
                    message="diverged",
                )

    outcomes = list(transport(Failing()).fit(fit_tasks(), VERSION))
    assert len(outcomes) == 4
    assert all(isinstance(o, Failure) and o.stage == "fit" for o in outcomes)


def test_evaluate_keeps_the_same_contract() -> None:
    outcomes = list(transport(FakeRunner(lambda n: [1, 1, 3])).evaluate(eval_tasks(), VERSION))
    assert len(outcomes) == 4
    assert [o.client_id for o in outcomes if isinstance(o, EvaluateReply)] == ["b", "d"]
    failed = [o for o in outcomes if isinstance(o, Failure)]
    assert sorted(f.client_id for f in failed) == ["a", "c"]
    assert all(f.stage == "transport" for f in failed)


def test_empty_cohort_gives_no_outcomes() -> None:
    assert list(transport(FakeRunner()).fit([], VERSION)) == []


def test_close_closes_the_runner() -> None:
    runner = FakeRunner()
    transport(runner).close()
    assert runner.closed == 1


@given(
    st.lists(st.integers(0, len(CLIENTS) - 1), max_size=12),
    st.none() | st.integers(0, 12),
)
def test_any_runner_behaviour_gives_one_outcome_per_task(
    plan: list[int], fail_after: int | None
) -> None:
    runner = FakeRunner(lambda n: plan, fail_after=fail_after)
    outcomes = list(transport(runner).fit(fit_tasks(), VERSION))
    assert sorted(o.client_id for o in outcomes) == list(CLIENTS)
    answered = plan if fail_after is None else plan[:fail_after]
    replied = [o.client_id for o in outcomes if isinstance(o, FitReply)]
    assert replied == list(dict.fromkeys(CLIENTS[i] for i in answered))
    assert all(o.stage == "transport" for o in outcomes if isinstance(o, Failure))


def test_a_cohort_closes_at_its_quorum_of_verified_results_in_simulated_time_order() -> None:
    seconds = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    inprocess = InProcessTransport(
        client_ids=CLIENTS, runner=FakeRunner(), arrival=lambda task: seconds[task.client_id]
    )
    quorum = Quorum(2)
    handed = []
    for outcome in inprocess.fit(fit_tasks(), VERSION, quorum=quorum):
        handed.append(outcome)
        if isinstance(outcome, FitReply) and outcome.client_id != "d":  # d fails verification
            quorum.count()
    assert [o.client_id for o in handed] == ["d", "c", "b", "a"]
    assert all(isinstance(o, FitReply) for o in handed[:3])
    closed = handed[3]
    assert isinstance(closed, Failure)
    assert (closed.stage, closed.kind) == (Stage.TRANSPORT, FailureKind.ROUND_CLOSED)


def test_a_quorum_of_the_whole_cohort_streams_it_as_the_runner_answers() -> None:
    runner = FakeRunner(lambda n: [2, 0, 3, 1])
    outcomes = list(transport(runner).fit(fit_tasks(), VERSION, quorum=Quorum(len(CLIENTS))))
    assert [o.client_id for o in outcomes] == ["c", "a", "d", "b"]


def test_a_later_wave_closes_once_the_rounds_quorum_is_met() -> None:
    quorum = Quorum(3, verified=2)  # the first wave brought two verified results
    handed = []
    for outcome in transport(FakeRunner()).fit(fit_tasks(), VERSION, quorum=quorum):
        handed.append(outcome)
        if isinstance(outcome, FitReply):
            quorum.count()
    assert sum(isinstance(o, FitReply) for o in handed) == 1
    assert [o.kind for o in handed if isinstance(o, Failure)] == [FailureKind.ROUND_CLOSED] * 3


def test_with_deltas_a_clients_download_is_what_a_deployed_server_would_send() -> None:
    """First round: the whole model; next: the delta against the last model it got;
    the same version again (an evaluation, then a fit): nothing."""
    rng = np.random.default_rng(0)
    first = ModelVersion.of(Weights({"w": rng.normal(size=500).astype(np.float32)}))
    step = (first.weights["w"] + 1e-3 * rng.normal(size=500)).astype(np.float32)
    second = ModelVersion.of(Weights({"w": step}))
    transport = InProcessTransport(
        client_ids=CLIENTS, runner=FakeRunner(), downlink=Downlink(delta=True)
    )
    list(transport.fit(fit_tasks(["a", "b"]), first))
    assert [transport.downloaded(c, first.digest) for c in "ab"] == [len(first.data)] * 2
    list(transport.evaluate(eval_tasks(["a"]), second))  # a now holds the second
    list(transport.fit(fit_tasks(["a", "b", "c"]), second))
    sizes = [transport.downloaded(c, second.digest) for c in "abc"]
    assert sizes[0] == 0  # held it already
    assert 0 < sizes[1] < 0.9 * len(second.data)  # the delta from the first
    assert sizes[2] == len(second.data)  # new: the whole model


def test_without_deltas_the_transport_measures_nothing() -> None:
    transport = InProcessTransport(client_ids=CLIENTS, runner=FakeRunner())
    list(transport.fit(fit_tasks(), VERSION))
    assert transport.downloaded("a", VERSION.digest) is None
