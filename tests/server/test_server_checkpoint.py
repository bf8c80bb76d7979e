"""StoreCheckpoint: a restarted server resumes after its last closed round, committed or
aborted, as an uninterrupted run goes on, and the run's totals span its processes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_server_asynchronous import ScriptedRunner

from fedhive.config.secagg import SimulatedDropout
from fedhive.core.serde import model_version
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.errors import StateError
from fedhive.privacy import GaussianEvent, epsilon
from fedhive.secagg import Stage
from fedhive.server.asynchronous import AsyncLoop
from fedhive.server.checkpoint import Resumed, StoreCheckpoint
from fedhive.server.history import CohortStats, RoundRecord
from fedhive.server.orchestrator import RoundLoop, RunResult
from fedhive.server.run import EvaluateFn
from fedhive.server.secure import SecureAggregation
from fedhive.server.store import StateStore, verify_state
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.secure import SecAggDevices
from fedhive.strategy import (
    Algorithm,
    BufferState,
    Control,
    DifferentialPrivacy,
    DpMode,
    PrivacyState,
    Stateless,
    StrategyState,
    fedadam,
    fedavg,
    fedbuff,
    scaffold,
)
from fedhive.transport.inprocess import InProcessTransport
from lstsq_app import build

INITIAL = Weights({"w": np.zeros(3, np.float32)})
FEDAVG_STATE = StrategyState((Stateless(), Stateless()))
"""A FedAvg run's state (server SGD, synchronous rounds)."""


def open_run(
    store: StateStore,
    *,
    new_run_id: str = "run",
    strategy: str = "fedavg",
    initial: Weights = INITIAL,
    initial_state: StrategyState | None = None,
) -> tuple[StoreCheckpoint, Resumed]:
    """One server process's start: resume the store's run, or start ``new_run_id``."""
    return StoreCheckpoint.open(
        store,
        new_run_id=new_run_id,
        strategy=strategy,
        seed=0,
        config={},
        initial=initial,
        initial_state=FEDAVG_STATE if initial_state is None else initial_state,
    )


def open_checkpoint(store: StateStore) -> StoreCheckpoint:
    return open_run(store)[0]


def round_weights(rnd: int) -> Weights:
    return Weights({"w": np.full(3, rnd, np.float32)})


def finish(
    checkpoint: StoreCheckpoint, rnd: int, *, committed: bool, state: StrategyState | None = None
) -> None:
    fit = CohortStats(selected=2, succeeded=1, failed=1, bytes_down=100, bytes_up=40)
    fit.contributors.append("c1")
    record = RoundRecord(
        round=rnd,
        seconds=1.0,
        committed=committed,
        version="",
        fit=fit,
        evaluate=CohortStats(),
        train={},
        centralized={},
        federated={},
        note="" if committed else "too few clients",
    )
    checkpoint.begin(rnd)
    checkpoint.end(
        record, ModelVersion.of(round_weights(rnd)), FEDAVG_STATE if state is None else state
    )


def test_totals_count_the_rounds_and_traffic_of_every_server_process(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        first = open_checkpoint(store)
        finish(first, 1, committed=True)
        finish(first, 2, committed=False)
    with StateStore(tmp_path) as store:  # the server restarted
        second = open_checkpoint(store)
        assert second.run_id == first.run_id
        finish(second, 3, committed=True)
        totals = second.totals()
    assert (totals.last_round, totals.committed_rounds, totals.restarts) == (3, 2, 1)
    assert (totals.bytes_up, totals.bytes_down, totals.clients_failed) == (120, 300, 3)


def test_a_restart_continues_after_an_aborted_round_with_that_rounds_strategy_state(
    tmp_path: Path,
) -> None:
    one = GaussianEvent(noise_multiplier=1.0, sample_rate=0.5)
    two = GaussianEvent(noise_multiplier=2.0, sample_rate=0.5)

    def private(*events: GaussianEvent) -> StrategyState:
        return StrategyState((Stateless(), PrivacyState(1.0, events), Stateless()))

    with StateStore(tmp_path) as store:
        first = open_checkpoint(store)
        finish(first, 1, committed=True, state=private(one))
        finish(first, 2, committed=False, state=private(one, two))
    with StateStore(tmp_path) as store:  # the server crashed before round 3 committed
        second, resumed = open_run(store, new_run_id="other")
        assert (resumed.run_id, resumed.round) == ("run", 2)
        assert resumed.state.of(PrivacyState).events == (one, two)  # the aborted round's
        assert model_version(resumed.weights) == model_version(round_weights(1))
        finish(second, 3, committed=True)
        latest = store.latest_committed("run")
        assert latest is not None
        (newest, parent, *_rest) = store.lineage(latest.version)
        assert (newest.round, parent.round) == (3, 1)  # round 3 grew from round 1's model
    assert verify_state(tmp_path).ok


@dataclass(frozen=True)
class DropoutInRound(SimulatedDropout):
    """Devices vanish in one round only (the others are whole)."""

    only: int = 0

    def dropped(self, seed: int, round: int, cohort: Sequence[str]) -> frozenset[str]:
        return super().dropped(seed, round, cohort) if round == self.only else frozenset()


CLIENTS = 40
SECURE = SecureAggregation(
    dropout_fraction=0.3, correctness_bits=2, security_bits=20, clip_range=4.0
)
DISTRIBUTED_DP = Algorithm(
    min_fit_clients=CLIENTS,  # the round with dropouts fails
    transforms=(
        DifferentialPrivacy(
            noise_multiplier=1.0, clipping_norm=1.0, mode=DpMode.DISTRIBUTED, noise_seed=0
        ),
    ),
)


def secagg_devices(dropout_round: int = 2) -> SecAggDevices:
    """40 devices; in ``dropout_round``, 4 vanish after masking (their sum is still
    unmasked; 0: none ever does)."""
    app = build(CLIENTS)
    inner = InProcessTransport(client_ids=app.client_ids, runner=LocalBackend(app.client.client_fn))
    dropout = DropoutInRound(fraction=0.1, stage=Stage.MASKED_INPUT, only=dropout_round)
    return SecAggDevices(inner, seed=0, dropout=dropout)


def dp_loop(
    devices: SecAggDevices,
    checkpoint: StoreCheckpoint | None = None,
    evaluate_fn: EvaluateFn | None = None,
) -> RoundLoop:
    return RoundLoop(
        strategy=DISTRIBUTED_DP,
        transport=devices,
        seed=0,
        secure=SECURE,
        checkpoint=checkpoint,
        evaluate_fn=evaluate_fn,
    )


def serve_dp(
    store: StateStore,
    devices: SecAggDevices,
    until: int,
    evaluate_fn: EvaluateFn | None = None,
) -> tuple[Resumed, RunResult]:
    """One server process: open (or resume) the run in ``store``, run to round ``until``."""
    initial = build(CLIENTS).server.initial_weights
    checkpoint, resumed = open_run(
        store,
        strategy="dp-fedavg",
        initial=initial,
        initial_state=DISTRIBUTED_DP.initial_state(initial),
    )
    result = dp_loop(devices, checkpoint, evaluate_fn).run(
        resumed.weights, until, first_round=resumed.round + 1, state=resumed.state
    )
    return resumed, result


def test_a_run_resumed_after_a_failed_unmasked_dp_round_reports_the_uninterrupted_epsilon(
    tmp_path: Path,
) -> None:
    pytest.importorskip("dp_accounting")
    uninterrupted = dp_loop(secagg_devices()).run(build(CLIENTS).server.initial_weights, 4)
    assert [r.committed for r in uninterrupted.history] == [True, False, True, True]
    epsilons = [r.privacy.epsilon for r in uninterrupted.history]
    assert epsilons == sorted(set(epsilons))  # the failed round 2 was accounted too

    devices = secagg_devices()  # the clients outlive the server's crash
    with StateStore(tmp_path) as store:
        _, before = serve_dp(store, devices, until=2)
    with StateStore(tmp_path) as store:  # killed after round 2 failed, then restarted
        resumed, after = serve_dp(store, devices, until=4)
    assert resumed.round == 2
    history = (*before.history, *after.history)
    assert [r.round for r in history] == [1, 2, 3, 4]
    assert [r.privacy.epsilon for r in history] == epsilons
    assert after.version == uninterrupted.version
    assert verify_state(tmp_path).ok


class ServerCrashError(Exception):
    """The server process dies."""


def crashing_in_round(crash: int) -> EvaluateFn:
    """A centralised evaluation that kills the server in round ``crash`` (its
    ``crash``-th call: one a round), after the round's sum was unmasked and accounted."""
    calls = 0

    def evaluate(weights: Weights) -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls == crash:
            raise ServerCrashError
        return {}

    return evaluate


@pytest.mark.parametrize("dropout_round", [0, 2], ids=["committed", "failed"])
def test_a_round_interrupted_after_its_sum_was_unmasked_is_accounted_again_on_resume(
    tmp_path: Path, dropout_round: int
) -> None:
    """The crash comes in round 2's evaluation, before the round closed: the restarted
    server runs round 2 again, and its devices release a second noisy sum, so the run's
    epsilon after round 2 counts round 2's event twice (the devices' ledgers do)."""
    pytest.importorskip("dp_accounting")
    devices = secagg_devices(dropout_round)
    with StateStore(tmp_path) as store, pytest.raises(ServerCrashError):
        serve_dp(store, devices, until=3, evaluate_fn=crashing_in_round(2))
    with StateStore(tmp_path) as store:  # restarted
        round_1 = store.latest_committed("run")
        resumed, after = serve_dp(store, devices, until=2)
    assert resumed.round == 1  # round 2 runs again under its number
    assert round_1 is not None
    assert round_1.round == 1
    assert model_version(resumed.weights) == round_1.version  # the last committed model
    assert [r.round for r in after.history] == [2]
    event = GaussianEvent(noise_multiplier=1.0, sample_rate=1.0)  # 40 of 40 selected
    assert after.history[0].privacy.events == (event,)
    dp = DISTRIBUTED_DP.privacy
    assert dp is not None
    delta, kind = dp.target_delta, dp.accountant
    released = epsilon([event] * 3, target_delta=delta, kind=kind)  # rounds 1, 2 and 2 again
    assert after.history[0].privacy.epsilon == pytest.approx(released, rel=1e-12)
    assert released > epsilon([event] * 2, target_delta=delta, kind=kind)
    assert verify_state(tmp_path).ok


def test_fedbuff_resumed_after_a_version_that_did_not_commit_numbers_on_after_it(
    tmp_path: Path,
) -> None:
    model = Weights({"w": np.zeros(2)})
    strategy = fedbuff(buffer_size=1, concurrency=2)

    def serve(runner: ScriptedRunner, until: int) -> tuple[Resumed, RunResult]:
        with StateStore(tmp_path) as store:  # one server process
            checkpoint, resumed = open_run(
                store,
                strategy="fedbuff",
                initial=model,
                initial_state=strategy.initial_state(model),
            )
            looped = AsyncLoop(strategy=strategy, runner=runner, seed=0, checkpoint=checkpoint)
            rounds = until - resumed.round
            return resumed, looped.run(
                resumed.weights, rounds, resumed.state, first_round=resumed.round + 1
            )

    serve(ScriptedRunner({"a": 1.0, "b": 1.0}), until=1)
    _, failed = serve(ScriptedRunner({"a": 1.0, "b": 1.0}, bad=["a", "b"]), until=2)
    assert [r.committed for r in failed.history] == [False]
    resumed, result = serve(ScriptedRunner({"a": 1.0, "b": 1.0}), until=4)
    assert resumed.round == 2
    assert [r.round for r in result.history] == [3, 4]
    assert result.state.of(BufferState).version == 3  # records 1, 3 and 4 committed; 2 did not
    np.testing.assert_array_equal(result.weights["w"], [3.0, 3.0])
    assert verify_state(tmp_path).ok


class Watched:
    """A checkpoint that records what the loop told it, and passes it on."""

    def __init__(self, inner: StoreCheckpoint) -> None:
        self.inner = inner
        self.begun: list[int] = []
        self.ended: dict[int, StrategyState] = {}

    def begin(self, round: int) -> None:
        self.begun.append(round)
        self.inner.begin(round)

    def accounted(self, round: int, state: StrategyState) -> None:
        self.inner.accounted(round, state)

    def end(self, record: RoundRecord, model: ModelVersion, state: StrategyState) -> None:
        self.ended[record.round] = state
        self.inner.end(record, model, state)


class Dispatches:
    """An observer recording the rounds that started (dispatched fit tasks)."""

    def __init__(self) -> None:
        self.started: list[int] = []

    def round_started(self, round: int, num_tasks: int) -> None:
        self.started.append(round)

    def client_finished(self, round: int, ok: bool) -> None:
        pass

    def round_finished(self, record: RoundRecord) -> None:
        pass


LOCAL = build(4)


def local_devices() -> InProcessTransport:
    """4 least-squares clients (SCAFFOLD-capable)."""
    return InProcessTransport(
        client_ids=LOCAL.client_ids, runner=LocalBackend(LOCAL.client.client_fn)
    )


@dataclass
class LocalServer:
    """One server process of ``strategy`` on ``devices``, checkpointing to a store."""

    strategy: Algorithm
    devices: InProcessTransport
    evaluate_fn: EvaluateFn | None = None

    def __post_init__(self) -> None:
        self.checkpoint: Watched | None = None
        self.observer = Dispatches()
        self.resumed: Resumed | None = None

    def serve(self, store: StateStore, until: int) -> RunResult:
        """Open (or resume) the store's run and run it to round ``until``."""
        initial = LOCAL.server.initial_weights
        opened, self.resumed = open_run(
            store, initial=initial, initial_state=self.strategy.initial_state(initial)
        )
        self.checkpoint = Watched(opened)
        loop = RoundLoop(
            strategy=self.strategy,
            transport=self.devices,
            seed=0,
            checkpoint=self.checkpoint,
            observer=self.observer,
            evaluate_fn=self.evaluate_fn,
        )
        resumed = self.resumed
        return loop.run(resumed.weights, until, first_round=resumed.round + 1, state=resumed.state)


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        (fedavg(), scaffold(), r"2 component states, the algorithm has 3"),
        (
            fedavg(),
            fedadam(),
            r"component 0 holds 'none' state, the algorithm expects 'adaptive_moments'",
        ),
        (scaffold(), fedavg(), r"3 component states, the algorithm has 2"),
        (
            fedadam(),
            fedavg(),
            r"component 0 holds 'adaptive_moments' state, the algorithm expects 'none'",
        ),
    ],
    ids=["fedavg-to-scaffold", "fedavg-to-fedadam", "scaffold-to-fedavg", "fedadam-to-fedavg"],
)
def test_a_run_resumed_with_an_algorithm_its_state_does_not_fit_fails_before_any_round(
    tmp_path: Path, before: Algorithm, after: Algorithm, message: str
) -> None:
    """Never a silent reset: RoundLoop.run checks the resumed state (check_state) before
    round 3 begins; the store keeps the run as it was, and the run's own algorithm
    resumes it after round 2."""
    devices = local_devices()
    with StateStore(tmp_path) as store:
        LocalServer(before, devices).serve(store, until=2)
        committed = store.latest_committed("run")
    refused = LocalServer(after, devices)
    with StateStore(tmp_path) as store:
        with pytest.raises(StateError, match=message):
            refused.serve(store, until=4)
        unchanged = store.latest_committed("run")
    assert refused.checkpoint is not None
    assert refused.checkpoint.begun == []  # no round began: nothing opened in the store
    assert refused.checkpoint.ended == {}
    assert refused.observer.started == []  # and no client got a task
    assert committed is not None
    assert unchanged is not None
    assert committed.round == 2
    assert (unchanged.round, unchanged.version) == (committed.round, committed.version)
    resumer = LocalServer(before, devices)
    with StateStore(tmp_path) as store:
        result = resumer.serve(store, until=3)
    assert resumer.resumed is not None
    assert resumer.resumed.round == 2
    assert model_version(resumer.resumed.weights) == committed.version
    assert [r.round for r in result.history] == [3]
    assert verify_state(tmp_path).ok


def test_a_resumed_scaffold_run_restores_its_control_variate_bit_for_bit(
    tmp_path: Path,
) -> None:
    strategy = scaffold()
    devices = local_devices()  # the clients (and their c_i) outlive the server's crash
    crashing = LocalServer(strategy, devices, evaluate_fn=crashing_in_round(3))
    with StateStore(tmp_path) as store, pytest.raises(ServerCrashError):
        crashing.serve(store, until=4)
    assert crashing.checkpoint is not None
    assert sorted(crashing.checkpoint.ended) == [1, 2]  # round 3 never closed
    before = crashing.checkpoint.ended[2].of(Control).c  # the last closed round's c
    restarted = LocalServer(strategy, devices)
    with StateStore(tmp_path) as store:
        result = restarted.serve(store, until=3)
    assert restarted.resumed is not None
    assert restarted.resumed.round == 2
    after = restarted.resumed.state.of(Control).c
    assert before.any()  # two rounds moved c
    assert after.dtype == before.dtype == np.float64
    assert after.shape == before.shape
    assert after.tobytes() == before.tobytes()  # bit for bit
    # and the same c an uninterrupted two-round run (on fresh devices) ends with
    uninterrupted = RoundLoop(strategy=strategy, transport=local_devices(), seed=0).run(
        LOCAL.server.initial_weights, 2
    )
    assert uninterrupted.state.of(Control).c.tobytes() == before.tobytes()
    assert [r.round for r in result.history] == [3]  # the resumed run goes on from it
    assert result.history[0].committed
    assert verify_state(tmp_path).ok
