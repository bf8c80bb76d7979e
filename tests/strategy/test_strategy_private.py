"""DP-FedAvg: clipping, calibrated noise, accounting against dp-accounting, budgets."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.client.app import ClientApp
from fedhive.client.base import Context
from fedhive.client.privacy import LEDGER_KEY, privatize
from fedhive.config import parse_config
from fedhive.core.extensions import ClipAndNoise
from fedhive.core.messages import ClientConfig, EvaluateResult, FitReply, FitResult, PrivacyBudget
from fedhive.core.rng import run_stream
from fedhive.core.serde import record_from_bytes, record_to_bytes
from fedhive.core.version import ModelVersion
from fedhive.core.weights import SCAFFOLD_PREFIX, Weights
from fedhive.errors import ConfigError, PrivacyBudgetError, StateError
from fedhive.privacy import GaussianEvent, clip_l2, epsilon, gaussian_noise
from fedhive.server.app import ServerApp
from fedhive.simulation.app import SimulationApp
from fedhive.simulation.engine import run_simulation
from fedhive.strategy import Algorithm
from fedhive.strategy.accounting import Participation, PrivacyReport
from fedhive.strategy.private import DifferentialPrivacy, DpMode, PrivacyState
from fedhive.strategy.robust import CoordinateMedian, TrimmedMean
from fedhive.strategy.scaffold import Control, ControlVariates
from fedhive.strategy.state import Stateless, StrategyState, state_from_bytes, state_to_bytes

dp_accounting = pytest.importorskip("dp_accounting")

SIZE = 20_000


def private(base: Algorithm | None = None, **settings: Any) -> Algorithm:
    """``base`` with differential privacy as its last transform (was ``DpFedAvg``)."""
    base = Algorithm() if base is None else base
    return replace(base, transforms=(*base.transforms, DifferentialPrivacy(**settings)))


class ConstantClient:
    """Returns the same update every round, of L2 norm ``size``."""

    def __init__(self, client_id: str, size: float = 0.0) -> None:
        self.client_id = client_id
        self.size = size

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        direction = np.ones(SIZE) / math.sqrt(SIZE)
        return FitResult(delta=Weights({"w": self.size * direction}), num_examples=5)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Any) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def app(clients: int = 10, size: float = 0.0) -> SimulationApp:
    return SimulationApp(
        server=ServerApp(initial_weights=Weights({"w": np.zeros(SIZE)})),
        client=ClientApp(client_fn=lambda cid: ConstantClient(cid, size)),
        client_ids=[f"c{i}" for i in range(clients)],
    )


def test_central_noise_has_the_declared_standard_deviation() -> None:
    z, c, m = 0.7, 2.0, 10
    strategy = private(base=Algorithm(), noise_multiplier=z, clipping_norm=c, noise_seed=5)
    result = run_simulation(app(m), strategy=strategy, rounds=1)
    noise = result.weights["w"]  # zero updates: the new model is the noise on the mean
    expected = z * c / m
    sample = float(np.std(noise))
    # 99.9% chi-square interval for the std of SIZE normal draws
    half_width = 3.3 * expected / math.sqrt(2 * SIZE)
    assert abs(sample - expected) < half_width
    assert abs(float(np.mean(noise))) < 3.3 * expected / math.sqrt(SIZE)


def test_distributed_noise_sums_to_the_declared_standard_deviation() -> None:
    z, c, m = 0.7, 2.0, 10
    strategy = private(
        base=Algorithm(), noise_multiplier=z, clipping_norm=c, noise_seed=5, mode=DpMode.DISTRIBUTED
    )
    result = run_simulation(app(m), strategy=strategy, rounds=1)
    sample = float(np.std(result.weights["w"]))
    expected = z * c / m  # m shares of std z*c/sqrt(m), summed, divided by m
    assert abs(sample - expected) < 3.3 * expected / math.sqrt(2 * SIZE)


def test_updates_are_clipped_to_the_bound() -> None:
    strategy = private(base=Algorithm(), noise_multiplier=1e-9, clipping_norm=0.5, noise_seed=1)
    result = run_simulation(app(4, size=3.0), strategy=strategy, rounds=1)
    assert np.linalg.norm(result.weights["w"]) == pytest.approx(0.5, rel=1e-6)
    assert result.history[0].privacy.unclipped_fraction == 0.0


@pytest.mark.parametrize("scale", [1e-3, 0.49, 3.0, 1e6])
def test_client_side_clipping_keeps_every_update_within_the_bound(scale: float) -> None:
    rng = np.random.default_rng(0)
    update = Weights({"a": rng.normal(size=(30, 7)) * scale, "b": rng.normal(size=5) * scale})
    config = ClientConfig(extensions=(ClipAndNoise(noise_multiplier=1.0, clipping_norm=0.5),))
    context = Context(client_id="c", round=1, seed=run_stream(0))
    out = privatize(update, config, context)
    norm = math.sqrt(sum(float(np.sum(v**2)) for v in out.values()))
    assert norm <= 0.5
    ask = ClipAndNoise(noise_multiplier=2.0, clipping_norm=0.5, noise_std=1.0)
    noisy = privatize(update, ClientConfig(extensions=(ask,)), context)
    assert not np.allclose(noisy["a"], out["a"])


def reference_epsilon(z: float, q: float, rounds: int, delta: float) -> float:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds
    )
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def test_reported_epsilon_equals_dp_accountings_own_computation() -> None:
    strategy = private(
        base=Algorithm(fraction_fit=0.5), noise_multiplier=1.1, clipping_norm=1.0, noise_seed=0
    )
    result = run_simulation(app(10), strategy=strategy, rounds=6)
    for record in result.history:
        expected = reference_epsilon(1.1, 0.5, record.round, 1e-5)
        assert record.privacy.epsilon == pytest.approx(expected, rel=1e-9)
        assert record.privacy.delta == 1e-5
    epsilons = [r.privacy.epsilon for r in result.history]
    assert epsilons == sorted(epsilons)


def test_target_epsilon_stops_the_run_before_it_is_exceeded() -> None:
    after_3 = reference_epsilon(1.0, 1.0, 3, 1e-5)
    after_4 = reference_epsilon(1.0, 1.0, 4, 1e-5)
    strategy = private(
        base=Algorithm(),
        noise_multiplier=1.0,
        clipping_norm=1.0,
        noise_seed=0,
        target_epsilon=(after_3 + after_4) / 2,
    )
    result = run_simulation(app(3), strategy=strategy, rounds=10)
    assert len(result.history) == 3
    assert result.history[-1].privacy.epsilon <= strategy.privacy.target_epsilon
    assert "target_epsilon" in result.stop_reason


# A device's own settings: it clips to 1 and adds noise of std 2 itself (central mode
# asks it for neither), so each release costs a Gaussian mechanism with z = 2.
DEVICE_BUDGET = PrivacyBudget(
    epsilon_max=3.5, delta=1e-5, min_noise_multiplier=2.0, clipping_norm=1.0
)


def test_a_device_refuses_beyond_its_budget_and_is_not_selected_again() -> None:
    # Gaussian mechanisms with z = 2 composed (RDP, delta 1e-5): 2.17 after one, 3.19
    # after two, 4.01 after three: a budget of 3.5 pays for two rounds; the third is
    # refused before training.
    budget = DEVICE_BUDGET
    strategy = private(
        base=Algorithm(per_client={"c0": ClientConfig(privacy_budget=budget)}),
        noise_multiplier=2.0,
        clipping_norm=1.0,
        noise_seed=0,
    )
    result = run_simulation(app(3), strategy=strategy, rounds=5)
    contributors = [sorted(r.fit.contributors) for r in result.history]
    assert contributors[:2] == [["c0", "c1", "c2"]] * 2
    assert result.history[2].fit.failures == {"budget:budget_exceeded": 1}
    assert all(r.fit.selected == 2 for r in result.history[3:])  # c0 is unavailable now
    assert all(r.committed for r in result.history)


def test_the_ledger_persists_in_the_clients_state() -> None:
    from fedhive.client.base import TaskOrigin
    from fedhive.client.pipeline import run_fit
    from fedhive.core.messages import FitTask

    ask = ClipAndNoise(noise_multiplier=2.0)
    config = ClientConfig(privacy_budget=DEVICE_BUDGET, extensions=(ask,))
    state: dict[str, Any] = {}
    outcomes = []
    tasks = [
        FitTask(round=rnd, client_id="c0", version="v", seed=rnd, config=config)
        for rnd in (1, 2, 3)
    ]
    for task in tasks:
        origin = TaskOrigin.simulation(task)
        outcomes.append(
            run_fit(ConstantClient("c0"), task, app(1).server.initial_weights, state, origin=origin)
        )
    assert [isinstance(o, FitReply) for o in outcomes] == [True, True, False]
    assert TaskOrigin.simulation(tasks[1]).ledger_id in state[LEDGER_KEY]
    assert TaskOrigin.simulation(tasks[2]).ledger_id not in state[LEDGER_KEY]


def test_adaptive_clipping_moves_the_norm_toward_the_updates() -> None:
    strategy = parse_config(
        {
            "run": {"app": "x:y", "rounds": 1},
            "privacy": {"adaptive": True, "clipping_norm": 0.1, "noise_multiplier": 1.0},
        }
    ).strategy
    assert isinstance(strategy, Algorithm)
    assert strategy.privacy is not None
    assert strategy.privacy.adaptive is not None
    result = run_simulation(app(5, size=2.0), strategy=strategy, rounds=12)
    norms = [r.privacy.clipping_norm for r in result.history]
    assert norms == sorted(norms)
    assert norms[-1] > 2 * norms[0]


def test_privacy_section_builds_dp_fedavg_and_names_bad_keys() -> None:
    config = parse_config(
        {
            "run": {"app": "x:y", "rounds": 1, "seed": 3},
            "strategy": {"name": "fedadam"},
            "privacy": {"noise_multiplier": 0.5, "target_epsilon": 4.0, "accountant": "pld"},
        }
    )
    assert isinstance(config.strategy, Algorithm)
    assert config.strategy.privacy is not None
    assert config.strategy.privacy.noise_seed == 3
    assert config.strategy.server_optimizer is not None
    with pytest.raises(ConfigError, match=r"privacy\.noise_multiplier"):
        parse_config({"run": {"app": "x:y", "rounds": 1}, "privacy": {"noise_multiplier": -1}})
    # SCAFFOLD now composes with DP (two releases a round), but not with adaptive
    # clipping, and the asynchronous FedBuff takes no DP at all.
    scaffold = parse_config(
        {"run": {"app": "x:y", "rounds": 1}, "strategy": {"name": "scaffold"}, "privacy": {}}
    ).strategy
    assert [type(t) for t in scaffold.transforms] == [ControlVariates, DifferentialPrivacy]
    with pytest.raises(ConfigError, match=r"privacy\.adaptive"):
        parse_config(
            {
                "run": {"app": "x:y", "rounds": 1},
                "strategy": {"name": "scaffold"},
                "privacy": {"adaptive": True},
            }
        )
    with pytest.raises(ConfigError, match="fedbuff"):
        parse_config(
            {"run": {"app": "x:y", "rounds": 1}, "strategy": {"name": "fedbuff"}, "privacy": {}}
        )


def test_a_refusal_is_replaced_by_another_device_in_the_same_round() -> None:
    strategy = private(
        base=Algorithm(
            fraction_fit=0.5, per_client={"c0": ClientConfig(privacy_budget=DEVICE_BUDGET)}
        ),
        noise_multiplier=2.0,
        clipping_norm=1.0,
        noise_seed=0,
    )
    result = run_simulation(app(6), strategy=strategy, rounds=12)
    refusals = [r for r in result.history if r.fit.failures]
    assert len(refusals) == 1  # c0 refuses once, then is never selected again
    record = refusals[0]
    assert record.fit.failures == {"budget:budget_exceeded": 1}
    assert record.fit.selected == 4  # 3 sampled + 1 replacement
    assert len(record.fit.contributors) == 3
    assert "c0" not in record.fit.contributors


def composed_epsilon(z: float, rates: list[float], delta: float) -> float:
    """dp-accounting's epsilon of one Poisson-subsampled Gaussian round per rate."""
    accountant = dp_accounting.rdp.RdpAccountant()
    for q in rates:
        event = dp_accounting.GaussianDpEvent(z)
        accountant.compose(event if q == 1 else dp_accounting.PoissonSampledDpEvent(q, event))
    return float(accountant.get_epsilon(delta))


def test_epsilon_is_accounted_at_the_min_fit_clients_floor() -> None:
    # 20 clients, fraction 0.1 but min_fit_clients 10: half of them take part each round.
    strategy = private(
        base=Algorithm(fraction_fit=0.1, min_fit_clients=10),
        noise_multiplier=1.0,
        clipping_norm=1.0,
        noise_seed=0,
    )
    result = run_simulation(app(20), strategy=strategy, rounds=4)
    for record in result.history:
        assert record.fit.selected == 10
        expected = reference_epsilon(1.0, 0.5, record.round, 1e-5)
        assert record.privacy.epsilon == pytest.approx(expected, rel=1e-9)


def test_epsilon_is_accounted_at_the_over_selected_rate() -> None:
    strategy = private(
        base=Algorithm(fraction_fit=0.5, over_selection=0.3),  # ceil(0.65 * 20) = 13 selected
        noise_multiplier=1.0,
        clipping_norm=1.0,
        noise_seed=0,
    )
    result = run_simulation(app(20), strategy=strategy, rounds=3)
    for record in result.history:
        assert (record.fit.selected, len(record.fit.contributors)) == (13, 10)
        expected = reference_epsilon(1.0, 13 / 20, record.round, 1e-5)
        assert record.privacy.epsilon == pytest.approx(expected, rel=1e-9)


def test_target_epsilon_is_enforced_at_the_real_rate() -> None:
    after_3 = reference_epsilon(1.0, 0.5, 3, 1e-5)
    after_4 = reference_epsilon(1.0, 0.5, 4, 1e-5)
    strategy = private(
        base=Algorithm(fraction_fit=0.1, min_fit_clients=10),
        noise_multiplier=1.0,
        clipping_norm=1.0,
        noise_seed=0,
        target_epsilon=(after_3 + after_4) / 2,
    )
    result = run_simulation(app(20), strategy=strategy, rounds=10)
    assert len(result.history) == 3
    assert "sample rate 0.5" in result.stop_reason


def test_a_replacement_wave_is_accounted_in_its_rounds_rate() -> None:
    budget = PrivacyBudget(epsilon_max=3.5, delta=1e-5)
    strategy = private(
        base=Algorithm(fraction_fit=0.5, per_client={"c0": ClientConfig(privacy_budget=budget)}),
        noise_multiplier=2.0,
        clipping_norm=1.0,
        noise_seed=0,
    )
    result = run_simulation(app(6), strategy=strategy, rounds=12)
    rates, available = [], 6
    for record in result.history:
        rates.append(record.fit.selected / available)
        available -= record.fit.failures.get("budget:budget_exceeded", 0)
        expected = composed_epsilon(2.0, rates, 1e-5)
        assert record.privacy.epsilon == pytest.approx(expected, rel=1e-9)
    assert 4 / 6 in rates  # the round whose refusal was replaced: 3 sampled + 1
    assert available == 5


class Checkpoints:
    """Records what the round loop hands to its checkpoint after each round."""

    def __init__(self) -> None:
        self.ended: list[tuple[bool, Any]] = []

    def begin(self, round: int) -> None:
        pass

    def accounted(self, round: int, state: Any) -> None:
        pass

    def end(self, record: Any, model: ModelVersion, state: Any) -> None:
        self.ended.append((record.committed, state))


def test_a_failed_distributed_round_whose_sum_was_unmasked_is_accounted() -> None:
    from fedhive.config.secagg import SimulatedDropout
    from fedhive.secagg import Stage
    from fedhive.server.orchestrator import RoundLoop
    from fedhive.server.secure import SecureAggregation
    from fedhive.simulation.backends.local import LocalBackend
    from fedhive.simulation.secure import SecAggDevices
    from fedhive.transport.inprocess import InProcessTransport
    from lstsq_app import build

    clients = 40
    secure = SecureAggregation(
        dropout_fraction=0.3, correctness_bits=2, security_bits=20, clip_range=4.0
    )
    strategy = private(
        base=Algorithm(min_fit_clients=clients),  # 4 devices drop after masking: too few
        noise_multiplier=1.0,
        clipping_norm=1.0,
        mode=DpMode.DISTRIBUTED,
        noise_seed=0,
    )
    lstsq = build(clients)
    inner = InProcessTransport(
        client_ids=lstsq.client_ids, runner=LocalBackend(lstsq.client.client_fn)
    )
    devices = SecAggDevices(
        inner, seed=0, dropout=SimulatedDropout(fraction=0.1, stage=Stage.MASKED_INPUT)
    )
    checkpoints = Checkpoints()
    loop = RoundLoop(
        strategy=strategy, transport=devices, seed=0, secure=secure, checkpoint=checkpoints
    )
    result = loop.run(lstsq.server.initial_weights, 3)
    for record in result.history:
        assert not record.committed
        assert "min_fit_clients" in record.note
        expected = reference_epsilon(1.0, 1.0, record.round, 1e-5)
        assert record.privacy.epsilon == pytest.approx(expected, rel=1e-9)
    for rnd, (committed, state) in enumerate(checkpoints.ended, start=1):
        assert not committed
        events = state.of(PrivacyState).events  # kept though not committed
        assert [e.count for e in events] == [rnd]


def test_distributed_noise_shares_cover_an_over_selected_rounds_quorum() -> None:
    z, c = 0.7, 2.0
    strategy = private(
        base=Algorithm(fraction_fit=0.5, over_selection=0.3),  # 13 selected, 10 summed
        noise_multiplier=z,
        clipping_norm=c,
        noise_seed=5,
        mode=DpMode.DISTRIBUTED,
    )
    result = run_simulation(app(20), strategy=strategy, rounds=1)
    assert len(result.history[0].fit.contributors) == 10
    sample = float(np.std(result.weights["w"]))
    expected = z * c / 10  # 10 shares of std z*c/sqrt(10), summed, divided by 10
    assert abs(sample - expected) < 3.3 * expected / math.sqrt(2 * SIZE)


@pytest.mark.slow
def test_a_hundred_rounds_at_the_floor_report_the_audits_real_epsilon() -> None:
    # The audit's case: 20 clients, fraction 0.1, min_fit_clients 10, z = 1, 100 rounds:
    # 7.90 was reported (q = 0.1); at the real q = 0.5 epsilon is 44.8.
    from fedhive.strategy.accounting import Participation

    strategy = private(base=Algorithm(fraction_fit=0.1, min_fit_clients=10), noise_multiplier=1.0)
    state = strategy.initial_state(app(1).server.initial_weights)
    for rnd in range(1, 101):
        state, report = strategy.account(state, rnd, Participation(10, 20), committed=True)
    assert report.epsilon == pytest.approx(reference_epsilon(1.0, 0.5, 100, 1e-5), rel=1e-9)
    assert round(report.epsilon, 1) == 44.8


def test_a_rounds_privacy_report_is_typed_and_carries_its_event() -> None:
    # Before: record.privacy was a dict of the strategy's "dp.*" metrics, with no event.
    strategy = private(
        base=Algorithm(fraction_fit=0.5), noise_multiplier=1.1, clipping_norm=0.5, noise_seed=1
    )
    result = run_simulation(app(10, size=3.0), strategy=strategy, rounds=2)
    for record in result.history:
        report = record.privacy
        assert isinstance(report, PrivacyReport)
        assert report.events == (GaussianEvent(noise_multiplier=1.1, sample_rate=0.5),)
        assert (report.clipping_norm, report.unclipped_fraction) == (0.5, 0.0)
        assert not any(key.startswith("dp.") for key in record.train)
        line = record.to_json()["privacy"]
        assert line["events"] == [{"noise_multiplier": 1.1, "sample_rate": 0.5, "count": 1}]
        assert (line["epsilon"], line["delta"]) == (report.epsilon, 1e-5)
    assert result.history[0].privacy.epsilon < result.history[1].privacy.epsilon
    settled = result.state.of(PrivacyState)  # the round's figures do not outlive it
    assert (settled.round_clipping_norm, settled.round_unclipped_fraction) == (None, None)


def test_a_central_round_that_released_nothing_reports_no_event() -> None:
    from fedhive.strategy.accounting import Participation

    strategy = private(base=Algorithm(), noise_multiplier=1.0)
    state = strategy.initial_state(app(1).server.initial_weights)
    state, report = strategy.account(state, 1, Participation(4, 10), committed=False)
    assert report == PrivacyReport(epsilon=0.0, delta=1e-5)
    assert report.to_json() == {"epsilon": 0.0, "delta": 1e-5, "events": []}


@pytest.mark.parametrize("mode", list(DpMode))
def test_each_selected_client_is_asked_to_clip_and_noise_by_a_typed_instruction(
    mode: DpMode,
) -> None:
    strategy = private(
        base=Algorithm(fraction_fit=1.0), noise_multiplier=2.0, clipping_norm=0.5, mode=mode
    )
    weights = Weights({"w": np.zeros(3)})
    state = strategy.initial_state(weights)
    clients = ["a", "b", "c", "d"]
    chosen = strategy.configure_fit(state, 1, weights, clients, np.random.default_rng(0))
    assert len(chosen) == 4
    if mode == DpMode.DISTRIBUTED:  # each adds its share of std z*C over the 4 of them
        expected = ClipAndNoise(
            noise_multiplier=2.0, clipping_norm=0.5, noise_std=2.0 * 0.5 / 2.0, seeded=False
        )
    else:  # the server clips and noises: the device is only told z
        expected = ClipAndNoise(noise_multiplier=2.0)
    for instruction in chosen:
        assert instruction.config.extensions == (expected,)
        assert dict(instruction.config.extra) == {}


# The composed contract: DP as the last transform, after a robust rule or SCAFFOLD.

EPS = float(np.finfo(np.float64).eps)


def reply(client_id: str, update: Weights) -> FitReply:
    return FitReply(client_id=client_id, round=3, version="v", update=update, num_examples=1)


def structured_updates(rng: np.random.Generator, clients: int, blocks: int) -> list[np.ndarray]:
    """Updates whose coordinate-wise rule outputs lie outside the ball they were clipped
    to: client i is zero on coordinate i % 3 of each block of three, ``a`` elsewhere, so
    per coordinate two thirds of the (clipped) values are ``a`` and the rule keeps it,
    giving a norm of sqrt(3/2) C. Scales differ (some below C, some far above), and the
    coordinates' signs and magnitudes are random."""
    base = rng.uniform(0.5, 1.5, size=3 * blocks) * rng.choice([-1.0, 1.0], size=3 * blocks)
    scales = [0.3, 4.0, 50.0, 0.5, 7.0, 900.0]
    out = []
    for i in range(clients):
        mask = np.ones(3 * blocks)
        mask[i % 3 :: 3] = 0.0
        jitter = 1 + 0.05 * rng.uniform(size=3 * blocks)
        out.append(scales[i % len(scales)] * base * jitter * mask)
    return out


@pytest.mark.parametrize(
    ("rule", "clients"),
    [(CoordinateMedian(), 3), (CoordinateMedian(), 5), (TrimmedMean(trim_fraction=0.34), 6)],
    ids=["median-3", "median-5", "trimmed-mean-6"],
)
def test_central_dp_clips_a_robust_rules_output_and_adds_noise_of_twice_the_norm(
    rule: Any, clients: int
) -> None:
    z, c, rnd, blocks = 0.8, 1.5, 3, 40
    dp = DifferentialPrivacy(noise_multiplier=z, clipping_norm=c, noise_seed=11)
    strategy = Algorithm(transforms=(dp,), aggregator=rule)
    size = 3 * blocks
    weights = Weights({"w": np.zeros(size)})
    updates = structured_updates(np.random.default_rng(4), clients, blocks)
    replies = [reply(f"c{i}", Weights({"w": u})) for i, u in enumerate(updates)]
    state = strategy.initial_state(weights)
    _, new, _ = strategy.aggregate_fit(state, rnd, weights, replies)

    # The oracle: clip each input to C, run the rule, clip its output to C, add the
    # round's first seeded noise at std z * 2C.
    layout = weights.layout()
    clipped = [reply(f"c{i}", Weights({"w": clip_l2(u, c)[0]})) for i, u in enumerate(updates)]
    ruled = rule(layout, clipped).update
    assert np.linalg.norm(ruled) > 1.1 * c  # so the output clip matters here
    bounded, _ = clip_l2(ruled, c)
    noise = gaussian_noise(size, z * 2 * c, dp.noise(rnd, 0))
    expected = bounded + noise
    # Entries of the clipped vectors are at most C; the inputs' and output's clip scale
    # by a few roundings each, the noise's std by one, the sum by one more.
    tolerance = 32 * EPS * (c + np.abs(noise))
    assert np.all(np.abs(new["w"] - expected) <= tolerance)
    # Not the mean's noise (std z * C), nor the rule's unclipped output.
    assert not np.allclose(new["w"], bounded + gaussian_noise(size, z * c, dp.noise(rnd, 0)))
    assert not np.allclose(new["w"], ruled + noise)


def scaffold_replies(size: int, clients: int, scale: float = 0.0) -> list[FitReply]:
    rng = np.random.default_rng(9)
    return [
        reply(
            f"c{i}",
            Weights(
                {
                    "w": scale * rng.normal(size=size),
                    SCAFFOLD_PREFIX + "w": scale * rng.normal(size=size),
                }
            ),
        )
        for i in range(clients)
    ]


def test_dp_after_control_variates_accounts_two_releases_a_round() -> None:
    z, c = 1.2, 1.0
    dp = DifferentialPrivacy(noise_multiplier=z, clipping_norm=c, noise_seed=0)
    strategy = Algorithm(transforms=(ControlVariates(), dp))
    assert strategy.releases == 2
    weights = Weights({"w": np.zeros(8)})
    state = strategy.initial_state(weights)
    participation = Participation(3, 10)
    strategy.check_budget(state, 1, participation)
    state, _, _ = strategy.aggregate_fit(state, 1, weights, scaffold_replies(8, 3, scale=2.0))
    state, report = strategy.account(state, 1, participation, committed=True)
    two = GaussianEvent(noise_multiplier=z, sample_rate=0.3, count=2)
    assert report is not None
    assert report.events == (two,)
    assert report.events[0].count == 2
    assert report.epsilon == epsilon([two], target_delta=dp.target_delta, kind=dp.accountant)
    assert state.of(PrivacyState).events == (two,)

    # A budget one release fits in but two do not: SCAFFOLD + DP refuses the round,
    # plain DP with the same settings lets it run.
    one = GaussianEvent(noise_multiplier=z, sample_rate=0.3)
    after_one = epsilon([one], target_delta=dp.target_delta)
    after_two = epsilon([two], target_delta=dp.target_delta)
    assert after_one < after_two
    tight = replace(dp, target_epsilon=(after_one + after_two) / 2)
    plain = Algorithm(transforms=(tight,))
    plain.check_budget(plain.initial_state(weights), 1, participation)
    both = Algorithm(transforms=(ControlVariates(), tight))
    with pytest.raises(PrivacyBudgetError, match="target_epsilon"):
        both.check_budget(both.initial_state(weights), 1, participation)


def test_the_control_variate_sums_noise_is_not_the_model_updates() -> None:
    # Zero updates and zero dc: the model moves by the first release's noise over the
    # count, c by the fraction times the second release's noise over the count.
    z, c, rnd, size, clients = 0.9, 2.0, 4, 500, 5
    dp = DifferentialPrivacy(noise_multiplier=z, clipping_norm=c, noise_seed=21)
    strategy = Algorithm(transforms=(ControlVariates(), dp))
    weights = Weights({"w": np.zeros(size)})
    state = strategy.initial_state(weights)
    state, new, _ = strategy.aggregate_fit(state, rnd, weights, scaffold_replies(size, clients))
    first = gaussian_noise(size, z * c, dp.noise(rnd, 0)) / clients
    second = gaussian_noise(size, z * c, dp.noise(rnd, 1)) / clients
    control = state.of(Control).c
    assert np.all(np.abs(new["w"] - first) <= 4 * EPS * np.abs(first))
    assert np.all(np.abs(control - second) <= 4 * EPS * np.abs(second))
    # Independent streams: the two noises are far from equal (or correlated).
    assert not np.allclose(first, second)
    assert abs(float(np.corrcoef(first, second)[0, 1])) < 4 / math.sqrt(size)


def merged(events: list[GaussianEvent]) -> tuple[GaussianEvent, ...]:
    """Runs of consecutive events with the same mechanism as one, counts summed."""
    out: list[GaussianEvent] = []
    for event in events:
        last = out[-1] if out else None
        if last and (last.noise_multiplier, last.sample_rate) == (
            event.noise_multiplier,
            event.sample_rate,
        ):
            out[-1] = replace(last, count=last.count + event.count)
        else:
            out.append(event)
    return tuple(out)


positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
events_lists = st.lists(
    st.builds(
        GaussianEvent,
        noise_multiplier=st.sampled_from([0.5, 1.0]) | positive,
        sample_rate=st.sampled_from([0.25, 1.0]) | st.floats(min_value=1e-6, max_value=1.0),
        count=st.integers(min_value=1, max_value=10_000),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    norm=positive,
    events=events_lists,
    round_norm=st.none() | positive,
    unclipped=st.none() | st.floats(min_value=0.0, max_value=1.0),
)
def test_a_privacy_state_round_trips_through_bytes(
    norm: float,
    events: list[GaussianEvent],
    round_norm: float | None,
    unclipped: float | None,
) -> None:
    own = PrivacyState(norm, tuple(events), round_norm, unclipped)
    state = StrategyState((Stateless(), own, Stateless()))
    back = state_from_bytes(state_to_bytes(state))
    assert back == StrategyState((Stateless(), replace(own, events=merged(events)), Stateless()))
    assert back.of(PrivacyState).clipping_norm == norm
    total = sum(e.count for e in events)
    assert sum(e.count for e in back.of(PrivacyState).events) == total


@pytest.mark.parametrize("shortened", ["noise_multiplier", "sample_rate", "count"])
def test_a_privacy_state_whose_event_arrays_differ_in_length_is_refused(shortened: str) -> None:
    events = (
        GaussianEvent(noise_multiplier=1.0, sample_rate=0.5),
        GaussianEvent(noise_multiplier=2.0, sample_rate=0.5),
    )
    state = StrategyState((Stateless(), PrivacyState(1.0, events), Stateless()))
    record = record_from_bytes(state_to_bytes(state))
    key = f"1.events.{shortened}"
    record[key] = record[key][:1]
    with pytest.raises(StateError, match="differ in length"):
        state_from_bytes(record_to_bytes(record))
