"""Byzantine-robust aggregators: the right statistic on hand-made inputs, attackers'
influence bounded where the weighted mean is dragged away, independence of arrival
order, norm clipping, and a simulated run with a median."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedhive.client.app import ClientApp
from fedhive.client.base import Context
from fedhive.core.messages import ClientConfig, EvaluateResult, FitReply, FitResult
from fedhive.core.weights import Layout, Weights
from fedhive.errors import AggregationError, ConfigError
from fedhive.server.app import ServerApp
from fedhive.simulation.app import SimulationApp
from fedhive.simulation.engine import run_simulation
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.compose import Aggregate, Aggregator, WeightedMean
from fedhive.strategy.robust import Bulyan, CoordinateMedian, Krum, NormBound, TrimmedMean


def layout_of(size: int) -> Layout:
    return Weights({"x": np.zeros(size)}).layout()


def replies_of(
    rows: Sequence[Sequence[float]],
    counts: Sequence[int] | None = None,
    metrics: Sequence[dict[str, float]] | None = None,
) -> list[FitReply]:
    return [
        FitReply(
            client_id=f"c{i:02d}",
            round=1,
            version="v",
            update=Weights({"x": np.asarray(row, dtype=np.float64)}),
            num_examples=counts[i] if counts else 1,
            metrics=metrics[i] if metrics else {},
        )
        for i, row in enumerate(rows)
    ]


def aggregate(rule: Aggregator, rows: Sequence[Sequence[float]]) -> np.ndarray:
    result = rule(layout_of(len(rows[0])), replies_of(rows))
    assert result.update is not None
    return result.update


@dataclass
class Recording:
    """An inner aggregator that keeps what it was given."""

    seen: list[FitReply] = field(default_factory=list)

    def __call__(self, layout: Layout, replies: Iterable[FitReply]) -> Aggregate:
        self.seen.extend(replies)
        return Aggregate(None, len(self.seen), 0)


ALL_RULES: list[Aggregator] = [
    CoordinateMedian(),
    TrimmedMean(0.2),
    Krum(byzantine=2),
    Krum(byzantine=2, multi=4),
    Bulyan(byzantine=2),
    NormBound(WeightedMean(), 1.0),
    NormBound(CoordinateMedian(), 1.0),
]


# --- the statistics ---------------------------------------------------------------------


def test_median_of_odd_and_even_counts() -> None:
    assert aggregate(CoordinateMedian(), [[1, 5], [3, 2], [2, 9]]).tolist() == [2, 5]
    assert aggregate(CoordinateMedian(), [[1, -4], [10, 0], [3, 8], [2, 1]]).tolist() == [2.5, 0.5]


def test_trimmed_mean_drops_floor_beta_n_at_each_end() -> None:
    rows = [[1, 50], [2, 40], [3, 30], [100, 20], [-100, 10]]
    assert aggregate(TrimmedMean(0.2), rows).tolist() == [2, 30]  # drops 1 each end
    assert aggregate(TrimmedMean(0.1), rows).tolist() == [1.2, 30]  # 0.5 -> drops none
    assert aggregate(TrimmedMean(0.25), [[4], [1], [2], [8]]).tolist() == [3]  # even n
    assert aggregate(TrimmedMean(0.0), [[1], [2], [6]]).tolist() == [3]
    assert TrimmedMean(0.29).trimmed(100) == 29  # read as written, not as 0.28999...


def test_totals_are_reported_but_counts_do_not_weight() -> None:
    rows = [[1.0], [2.0], [9.0]]
    result = CoordinateMedian()(
        layout_of(1),
        replies_of(rows, counts=[1, 3, 10**6], metrics=[{"loss": 1.0}, {"loss": 3.0}, {}]),
    )
    assert result.update is not None
    assert result.update.tolist() == [2.0]  # the liar's count buys it nothing
    assert (result.count, result.total_weight) == (3, 10**6 + 4)
    assert result.metrics == {"loss": 2.5}  # metrics are example-weighted


@pytest.mark.parametrize("rule", ALL_RULES, ids=repr)
def test_no_replies_give_no_update(rule: Aggregator) -> None:
    assert rule(layout_of(3), []) == Aggregate(None, 0, 0, {})


# --- Krum and Multi-Krum -----------------------------------------------------------------

HONEST: list[list[float]] = [[0, 0], [1, 0], [0, 2.5], [-3, 0], [0, -4]]  # Krum: 14, 24.25, ...
ATTACKERS: list[list[float]] = [[1e6, 1e6], [1e6, 1e6]]


def test_krum_picks_the_update_closest_to_the_honest_cluster() -> None:
    assert aggregate(Krum(byzantine=2), HONEST + ATTACKERS).tolist() == [0, 0]
    assert aggregate(Krum(byzantine=2), ATTACKERS + HONEST).tolist() == [0, 0]


def test_multi_krum_averages_the_m_best() -> None:
    got = aggregate(Krum(byzantine=2, multi=3), HONEST + ATTACKERS)
    np.testing.assert_allclose(got, np.mean(HONEST[:3], axis=0))
    got = aggregate(Krum(byzantine=2, multi=5), HONEST + ATTACKERS)
    np.testing.assert_allclose(got, np.mean(HONEST, axis=0))


def test_krum_refuses_too_few_clients_or_too_many_to_average() -> None:
    with pytest.raises(AggregationError, match=r"more than 2f \+ 2 = 6 replies, got 6"):
        aggregate(Krum(byzantine=2), HONEST[:4] + ATTACKERS)
    with pytest.raises(AggregationError, match="multi=6"):
        aggregate(Krum(byzantine=2, multi=6), HONEST + ATTACKERS)


# --- Bulyan ----------------------------------------------------------------------------


def test_bulyan_selects_by_krum_then_averages_around_the_median() -> None:
    # Iterated Krum keeps 0..4; the three closest to their median 2 are 1, 2, 3.
    assert aggregate(Bulyan(byzantine=1), [[v] for v in [0, 1, 2, 3, 4, 5, 1000]]) == [2.0]
    assert aggregate(Bulyan(byzantine=0), [[1], [2], [6]]).tolist() == [3]  # plain mean


def test_bulyan_stays_within_the_honest_range() -> None:
    honest: list[list[float]] = [
        [0, 0, 5],
        [1, -1, 4],
        [2, 1, 6],
        [0.5, 0.5, 5.5],
        [1.5, -0.5, 4.5],
    ]
    honest += [[1, 0, 5], [0.2, 0.3, 5.2], [1.7, -0.2, 4.8], [0.9, 0.8, 5.9]]
    got = aggregate(Bulyan(byzantine=2), [*honest, [-50, 80, 1e3], [60, -70, -1e3]])
    assert (np.min(honest, axis=0) <= got).all()
    assert (got <= np.max(honest, axis=0)).all()


def test_bulyan_refuses_too_few_clients() -> None:
    with pytest.raises(AggregationError, match=r"4f \+ 3 = 11 replies, got 10"):
        aggregate(Bulyan(byzantine=2), [[float(i)] for i in range(10)])


# --- bounded influence ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "rule",
    [
        CoordinateMedian(),
        TrimmedMean(0.2),
        Krum(byzantine=2),
        Krum(byzantine=2, multi=9),
        Bulyan(byzantine=2),
    ],
    ids=repr,
)
def test_robust_rules_bound_the_influence_of_f_attackers(rule: Aggregator, seed: int) -> None:
    rng = np.random.default_rng(seed)
    honest = 1.0 + 0.1 * rng.standard_normal((9, 6))
    attack = np.tile(-1e6 * honest.mean(axis=0), (2, 1))  # sign-flipped and scaled
    rows = np.vstack([honest, attack]).tolist()
    counts = [10] * 9 + [100] * 2  # and they overstate their data (WeightedMean's range)
    got = rule(layout_of(6), replies_of(rows, counts=counts)).update
    assert got is not None
    assert (honest.min(axis=0) <= got).all()
    assert (got <= honest.max(axis=0)).all()
    dragged = WeightedMean()(layout_of(6), replies_of(rows, counts=counts)).update
    assert dragged is not None
    assert (dragged < -1e5).all()


# --- independence of arrival order ------------------------------------------------------

ROWS: list[list[float]] = [
    [1, 0, 2],
    [1, 0, 2],
    [0.5, 3, -1],
    [2, 2, 2],
    [0.1, 0.2, 0.3],
    [-1, 5, 0.5],
]
ROWS += [[0, 0, 0], [3, -3, 3], [0.5, 3, -1], [9, 9, -9], [1.5, 1, 0]]
ORDERED = replies_of(ROWS, counts=list(range(1, 12)), metrics=[{"m": i / 7} for i in range(11)])


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(range(len(ORDERED))))
def test_results_do_not_depend_on_arrival_order(order: list[int]) -> None:
    shuffled = [ORDERED[i] for i in order]
    for rule in ALL_RULES:
        expected = rule(layout_of(3), ORDERED)
        got = rule(layout_of(3), shuffled)
        assert expected.update is not None
        assert got.update is not None
        assert got.update.tobytes() == expected.update.tobytes(), rule
        assert (got.count, got.total_weight, got.metrics) == (
            expected.count,
            expected.total_weight,
            expected.metrics,
        )


def test_duplicate_client_ids_are_ordered_by_value() -> None:
    a, b, c, d = replies_of([[0, 0], [1, 0], [0, 2.5], [-3, 0]])
    twin = FitReply(client_id="c00", round=1, version="v", update=b.update, num_examples=1)
    rows = [a, twin, c, d, b]
    first = Krum(byzantine=1)(layout_of(2), rows).update
    again = Krum(byzantine=1)(layout_of(2), rows[::-1]).update
    assert first is not None
    assert again is not None
    assert first.tobytes() == again.tobytes()


# --- NormBound --------------------------------------------------------------------------

MODEL = Weights({"w": np.zeros((2, 3), np.float32), "b": np.zeros(2, np.float16)})
float_updates = st.builds(
    lambda w, b: Weights({"w": w, "b": b}),
    hnp.arrays(np.float32, (2, 3), elements=st.floats(-1e4, 1e4, width=32)),
    hnp.arrays(np.float16, (2,), elements=st.floats(-100, 100, width=16)),
)


@settings(max_examples=200, deadline=None)
@given(updates=st.lists(float_updates, min_size=1, max_size=5), bound=st.floats(1e-3, 50))
def test_norm_bound_clips_every_update_to_the_bound(updates: list[Weights], bound: float) -> None:
    layout = MODEL.layout()
    replies = [
        FitReply(client_id=f"c{i}", round=1, version="v", update=u, num_examples=1)
        for i, u in enumerate(updates)
    ]
    inner = Recording()
    NormBound(inner, bound)(layout, replies)
    assert [r.client_id for r in inner.seen] == [r.client_id for r in replies]
    for before, after in zip(replies, inner.seen, strict=True):
        original, clipped = layout.flatten(before.update), layout.flatten(after.update)
        assert np.linalg.norm(clipped) <= bound
        assert after.update.layout() == layout
        if np.linalg.norm(original) <= bound:
            assert after is before
        else:  # same direction, scaled down (up to rounding to the model's dtypes)
            expected = original * (bound / np.linalg.norm(original))
            np.testing.assert_allclose(clipped, expected, rtol=2e-3, atol=bound * 2e-3)


def test_norm_bound_composes_with_the_weighted_mean() -> None:
    replies = replies_of([[3.0, 4.0], [0.3, 0.4]], counts=[1, 3], metrics=[{"a": 1}, {"a": 5}])
    result = NormBound(WeightedMean(), 1.0)(layout_of(2), replies)
    assert result.update is not None
    np.testing.assert_allclose(result.update, [(0.6 + 0.9) / 4, (0.8 + 1.2) / 4], rtol=1e-12)
    assert (result.count, result.total_weight, result.metrics) == (2, 4, {"a": 4.0})


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: TrimmedMean(0.5), "trim_fraction"),
        (lambda: TrimmedMean(-0.1), "trim_fraction"),
        (lambda: TrimmedMean(float("nan")), "trim_fraction"),
        (lambda: Krum(byzantine=-1), "byzantine"),
        (lambda: Krum(byzantine=True), "byzantine"),
        (lambda: Krum(multi=0), "multi"),
        (lambda: Bulyan(byzantine=1.5), "byzantine"),  # type: ignore[arg-type]
        (lambda: NormBound(WeightedMean(), 0.0), "max_norm"),
        (lambda: NormBound(WeightedMean(), float("inf")), "max_norm"),
        (lambda: NormBound("mean", 1.0), "inner"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_are_refused_naming_the_field(build: object, name: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: "):
        build()  # type: ignore[operator]


# --- end to end -------------------------------------------------------------------------


class StepClient:
    """Moves every weight by its step: ``honest-i`` by i + 1, ``attacker-i`` by -1e6."""

    def __init__(self, client_id: str) -> None:
        kind, _, index = client_id.partition("-")
        self.step = np.float32(-1e6 if kind == "attacker" else int(index) + 1)

    def fit(self, weights: Weights, config: ClientConfig, context: Context) -> FitResult:
        moved = Weights({k: np.asarray(v, np.float32) + self.step for k, v in weights.items()})
        return FitResult(weights=moved, num_examples=100)

    def evaluate(self, weights: Weights, config: ClientConfig, context: Context) -> EvaluateResult:
        return EvaluateResult(loss=0.0, num_examples=1)


def step_app() -> SimulationApp:
    return SimulationApp(
        server=ServerApp(
            initial_weights=Weights(
                {"w": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.float32)}
            )
        ),
        client=ClientApp(client_fn=StepClient),
        client_ids=["honest-0", "honest-1", "honest-2", "honest-3", "attacker-0"],
    )


def test_fedavg_with_a_median_runs_in_simulation_and_resists_an_attacker() -> None:
    robust = run_simulation(step_app(), strategy=Algorithm(aggregator=CoordinateMedian()), rounds=2)
    assert [r.committed for r in robust.history] == [True, True]
    for array in robust.weights.values():
        assert (array == 4).all()  # the median of steps 1, 2, 3, 4, -1e6 is 2, twice
    plain = run_simulation(step_app(), strategy=Algorithm(), rounds=2)
    for array in plain.weights.values():
        assert (np.asarray(array, np.float64) < -1e5).all()
