"""A device's budget holds against a server that lies in its task configuration.

Each test is a lying server: it asks for no DP, claims noise it does not ask the device
to add, or asks for seeded noise. The device charges what its own clipping and noise
imply (checked against dp-accounting directly) and draws noise the server cannot know.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fedhive.client.app import ClientApp
from fedhive.client.base import Context, TaskOrigin
from fedhive.client.pipeline import run_fit
from fedhive.client.privacy import LEDGER_KEY, load_ledger
from fedhive.core.extensions import ClipAndNoise, DpSgd, Extension
from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    ClientConfig,
    EvaluateResult,
    Failure,
    FitReply,
    FitResult,
    FitTask,
    PrivacyBudget,
)
from fedhive.core.rng import SeedStream
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError
from fedhive.privacy import GaussianEvent, SeededNoise, gaussian_noise
from fedhive.server.app import ServerApp

dp_accounting = pytest.importorskip("dp_accounting")

SIZE = 20_000
DELTA = 1e-5


class FixedClient:
    """Returns the same update every time: ``size`` times a unit vector; counts fits."""

    def __init__(self, size: float = 0.0) -> None:
        self.size = size
        self.fits = 0

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        self.fits += 1
        return FitResult(delta=Weights({"w": self.size * unit()}), num_examples=5)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def unit() -> np.ndarray:
    return np.ones(SIZE) / math.sqrt(SIZE)


MODEL = Weights({"w": np.zeros(SIZE)})


def task(ask: Extension | None, budget: PrivacyBudget | None, rnd: int = 1) -> FitTask:
    config = ClientConfig(privacy_budget=budget, extensions=() if ask is None else (ask,))
    return FitTask(round=rnd, client_id="c0", version="v", seed=42, config=config)


def deployed(task_id: str = "t1") -> TaskOrigin:
    return TaskOrigin(run_id="run-a", task_id=task_id)


def reference_epsilon(z: float, count: int) -> float:
    """Epsilon of ``count`` Gaussian mechanisms of multiplier ``z``, no sampling, RDP."""
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), count))
    return float(accountant.get_epsilon(DELTA))


def released(outcome: FitReply | Failure) -> np.ndarray:
    assert isinstance(outcome, FitReply), outcome
    return outcome.update["w"]


def test_a_budgeted_device_refuses_a_task_that_asks_for_no_dp() -> None:
    client = FixedClient(size=3.0)
    budget = PrivacyBudget(epsilon_max=10.0, delta=DELTA)
    state: dict[str, Any] = {}
    outcome = run_fit(client, task(None, budget), MODEL, state, origin=deployed())
    assert isinstance(outcome, Failure)
    assert (outcome.stage, outcome.kind) == (Stage.BUDGET, FailureKind.BUDGET_EXCEEDED)
    assert "epsilon = inf" in outcome.message
    assert client.fits == 0  # refused before training
    assert LEDGER_KEY not in state


def test_a_claimed_huge_noise_multiplier_without_noise_is_refused() -> None:
    client = FixedClient(size=3.0)
    budget = PrivacyBudget(epsilon_max=10.0, delta=DELTA)
    claim = ClipAndNoise(noise_multiplier=1e6)  # no clipping norm, no noise std
    outcome = run_fit(client, task(claim, budget), MODEL, {}, origin=deployed())
    assert isinstance(outcome, Failure)
    assert outcome.kind is FailureKind.BUDGET_EXCEEDED


def test_clipping_without_noise_is_refused() -> None:
    budget = PrivacyBudget(epsilon_max=10.0, delta=DELTA)
    claim = ClipAndNoise(noise_multiplier=1e6, clipping_norm=1.0)
    outcome = run_fit(FixedClient(3.0), task(claim, budget), MODEL, {}, origin=deployed())
    assert isinstance(outcome, Failure)
    assert outcome.kind is FailureKind.BUDGET_EXCEEDED


@pytest.mark.parametrize(("norm", "std"), [(1e-300, 1e300), (1e300, 1e-300), (1.0, 0.0)])
def test_noise_a_device_cannot_account_for_is_refused_not_a_crash(norm: float, std: float) -> None:
    budget = PrivacyBudget(epsilon_max=10.0, delta=DELTA)
    claim = ClipAndNoise(noise_multiplier=1.0, clipping_norm=norm, noise_std=std)
    outcome = run_fit(FixedClient(3.0), task(claim, budget), MODEL, {}, origin=deployed())
    assert isinstance(outcome, Failure)
    assert (outcome.stage, outcome.kind) in {
        (Stage.BUDGET, FailureKind.BUDGET_EXCEEDED),
        (Stage.PRIVACY, FailureKind.CLIENT_ERROR),
    }


def test_the_device_charges_the_noise_it_adds_not_the_servers_claim() -> None:
    # The server claims z = 1e6 but asks for clipping at 1e9 and noise of std 1e-3
    # (z = 1e-12 in truth). The device clips to its own 1.0 and adds std 2.0.
    budget = PrivacyBudget(
        epsilon_max=10.0, delta=DELTA, min_noise_multiplier=2.0, clipping_norm=1.0
    )
    claim = ClipAndNoise(noise_multiplier=1e6, clipping_norm=1e9, noise_std=1e-3)
    state: dict[str, Any] = {}
    client = FixedClient(size=100.0)
    updates = [
        released(
            run_fit(client, task(claim, budget, rnd), MODEL, state, origin=deployed(f"t{rnd}"))
        )
        for rnd in (1, 2, 3)
    ]
    ledger = load_ledger(state)
    assert [e.event for e in ledger.entries] == [
        GaussianEvent(noise_multiplier=2.0, sample_rate=1.0)
    ] * 3
    assert ledger.spent(target_delta=DELTA) == pytest.approx(reference_epsilon(2.0, 3), rel=1e-9)
    for update in updates:
        # Clipped to 1, not 100: along the update's direction, 1 + N(0, 2^2).
        assert abs(float(update @ unit()) - 1.0) < 5 * 2.0
        # The noise has the device's std: a 99.9% chi-square interval of SIZE draws.
        assert abs(float(np.std(update)) - 2.0) < 3.3 * 2.0 / math.sqrt(2 * SIZE)


def test_the_server_may_ask_for_more_noise_and_a_smaller_norm_than_the_device() -> None:
    budget = PrivacyBudget(
        epsilon_max=10.0, delta=DELTA, min_noise_multiplier=2.0, clipping_norm=1.0
    )
    claim = ClipAndNoise(noise_multiplier=0.1, clipping_norm=0.5, noise_std=3.0)  # z = 6 applied
    state: dict[str, Any] = {}
    update = released(
        run_fit(FixedClient(100.0), task(claim, budget), MODEL, state, origin=deployed())
    )
    [entry] = load_ledger(state).entries
    assert entry.event == GaussianEvent(noise_multiplier=6.0, sample_rate=1.0)
    assert abs(float(np.std(update)) - 3.0) < 3.3 * 3.0 / math.sqrt(2 * SIZE)


def test_a_device_with_its_own_settings_noises_a_task_that_asks_for_no_dp() -> None:
    budget = PrivacyBudget(
        epsilon_max=10.0, delta=DELTA, min_noise_multiplier=2.0, clipping_norm=1.0
    )
    state: dict[str, Any] = {}
    update = released(
        run_fit(FixedClient(100.0), task(None, budget), MODEL, state, origin=deployed())
    )
    assert abs(float(update @ unit()) - 1.0) < 5 * 2.0
    assert load_ledger(state).spent(target_delta=DELTA) == pytest.approx(
        reference_epsilon(2.0, 1), rel=1e-9
    )


def test_a_dpsgd_task_to_a_client_that_ignores_dpsgd_is_refused_before_release() -> None:
    budget = PrivacyBudget(epsilon_max=10.0, delta=DELTA)
    claim = DpSgd(noise_multiplier=1.0, max_grad_norm=1.0)
    client = FixedClient(size=3.0)
    state: dict[str, Any] = {}
    outcome = run_fit(client, task(claim, budget), MODEL, state, origin=deployed())
    assert isinstance(outcome, Failure)
    assert (outcome.stage, outcome.kind) == (Stage.BUDGET, FailureKind.BUDGET_EXCEEDED)
    assert client.fits == 1  # DP-SGD's cost is known only after training
    assert LEDGER_KEY not in state


def seeded_task() -> FitTask:
    return task(ClipAndNoise(noise_multiplier=1.0, clipping_norm=1.0, noise_std=1.0), None)


def test_dp_noise_seeded_is_ignored_on_a_deployed_device() -> None:
    fit = seeded_task()
    first = released(run_fit(FixedClient(0.5), fit, MODEL, {}, origin=deployed()))
    second = released(run_fit(FixedClient(0.5), fit, MODEL, {}, origin=deployed()))
    assert not np.array_equal(first, second)
    # The server regenerates the noise the task's seed would give and subtracts it:
    # what is left is still off the true update by noise of std 1.
    stream = SeedStream(fit.seed, f"run/round/{fit.round}/client/{fit.client_id}/fit")
    guess = gaussian_noise(SIZE, 1.0, SeededNoise(stream.child("dp-noise")))
    residual = first - guess - 0.5 * unit()
    assert float(np.std(residual)) > 1.0  # sqrt(2) if independent; 0 if seeded


def test_simulated_dp_noise_is_reproducible_from_the_seed() -> None:
    fit = seeded_task()
    origin = TaskOrigin.simulation(fit)
    first = released(run_fit(FixedClient(0.5), fit, MODEL, {}, origin=origin))
    again = released(run_fit(FixedClient(0.5), fit, MODEL, {}, origin=origin))
    np.testing.assert_array_equal(first, again)


def test_simulated_tasks_get_distinct_reproducible_ids() -> None:
    one = TaskOrigin.simulation(task(None, None, rnd=1))
    assert one == TaskOrigin.simulation(task(None, None, rnd=1))
    assert one.simulated
    assert one.ledger_id != TaskOrigin.simulation(task(None, None, rnd=2)).ledger_id
    assert not deployed().simulated
    with pytest.raises(ConfigError, match="task_id"):
        TaskOrigin(run_id="r", task_id="")


def test_a_deployed_context_never_gives_seeded_noise() -> None:
    context = Context(client_id="c", round=1, seed=SeedStream(7, "x"))
    assert context.noise_seed("dpsgd") != context.noise_seed("dpsgd")
    draws = [context.noise("dp-noise").normal(4) for _ in range(2)]
    assert not np.array_equal(draws[0], draws[1])
    simulated = Context(client_id="c", round=1, seed=SeedStream(7, "x"), simulated=True)
    assert simulated.noise_seed("dpsgd") == simulated.noise_seed("dpsgd")


def test_a_simulated_devices_own_noise_is_reproducible_from_the_run_seed() -> None:
    from fedhive.simulation.app import SimulationApp
    from fedhive.simulation.engine import run_simulation
    from fedhive.strategy import Algorithm
    from fedhive.strategy.private import DifferentialPrivacy

    budget = PrivacyBudget(
        epsilon_max=10.0, delta=DELTA, min_noise_multiplier=2.0, clipping_norm=1.0
    )
    app = SimulationApp(
        server=ServerApp(initial_weights=MODEL),
        client=ClientApp(client_fn=lambda cid: FixedClient(1.0)),
        client_ids=["c0", "c1"],
    )
    strategy = Algorithm(
        per_client={"c0": ClientConfig(privacy_budget=budget)},
        transforms=(DifferentialPrivacy(noise_multiplier=1.0, clipping_norm=1.0, noise_seed=0),),
    )
    runs = [run_simulation(app, strategy=strategy, rounds=2, seed=seed) for seed in (3, 3, 4)]
    assert all(sorted(r.history[-1].fit.contributors) == ["c0", "c1"] for r in runs)
    assert runs[0].version == runs[1].version != runs[2].version
