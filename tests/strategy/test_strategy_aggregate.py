"""Streaming accumulators: exact enough, bit-identical under any arrival order, and
refusing what they cannot sum exactly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedhive.errors import AggregationError
from fedhive.strategy.aggregate import ExactWeightedSum, WeightedMetrics, within_exact_range

SIZE = 5

# float32 model values (as a real model's deltas), held as float64 like Layout.flatten does
float32_vectors = hnp.arrays(
    np.float32,
    SIZE,
    elements=st.floats(-1000, 1000, width=32, allow_nan=False, allow_infinity=False),
).map(lambda a: a.astype(np.float64))
example_counts = st.integers(min_value=0, max_value=1000)
terms = st.lists(st.tuples(float32_vectors, example_counts), min_size=1, max_size=12)


def accumulate(items: list[tuple[np.ndarray, int]], size: int = SIZE) -> ExactWeightedSum:
    acc = ExactWeightedSum(size)
    for vector, weight in items:
        acc.add(vector, weight)
    return acc


def exact_sum(items: list[tuple[np.ndarray, int]]) -> list[Fraction]:
    size = len(items[0][0])
    return [sum((Fraction(float(v[i])) * w for v, w in items), Fraction(0)) for i in range(size)]


@given(terms)
def test_weighted_mean_matches_exact_arithmetic(items: list[tuple[np.ndarray, int]]) -> None:
    acc = accumulate(items)
    total_weight = sum(w for _, w in items)
    assert acc.total_weight == total_weight
    assert acc.count == len(items)
    total = acc.total()
    assert total.dtype == np.float64
    for i, (got, want) in enumerate(zip(total, exact_sum(items), strict=True)):
        magnitude = sum(abs(Fraction(float(v[i]))) * w for v, w in items)
        assert abs(Fraction(float(got)) - want) <= Fraction(1e-12) * magnitude + Fraction(2) ** -60


@given(terms.filter(lambda items: sum(w for _, w in items) > 0))
def test_streaming_mean_equals_batch_weighted_mean(items: list[tuple[np.ndarray, int]]) -> None:
    acc = accumulate(items)
    streamed = acc.total() / acc.total_weight
    vectors = np.stack([v for v, _ in items])
    weights = np.array([w for _, w in items], dtype=np.float64)
    batch = np.average(vectors, axis=0, weights=weights)
    scale = max(1.0, float(np.abs(vectors).max()))
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=1e-12 * scale)


@given(terms, st.data())
def test_total_is_bit_identical_under_any_arrival_order(
    items: list[tuple[np.ndarray, int]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(items))
    assert accumulate(items).total().tobytes() == accumulate(shuffled).total().tobytes()


@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(-(2**20), 2**20), min_size=SIZE, max_size=SIZE),
            st.integers(0, 2**9),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_exact_for_multiples_of_2_pow_minus_16(items: list[tuple[list[int], int]]) -> None:
    scaled = [(np.array(ks, dtype=np.float64) * 2.0**-16, w) for ks, w in items]
    total = accumulate(scaled).total()
    for got, want in zip(total, exact_sum(scaled), strict=True):
        assert Fraction(float(got)) == want


def test_negative_values_and_fractions_below_one_unit() -> None:
    # -0.75 * 3 = -2.25 needs a floor into the high word and a positive remainder;
    # the other values are float32-derived (not multiples of 2**-16), as real updates are
    tenth, tiny = float(np.float32(0.1)), float(np.float32(1e-9))
    items = [(np.array([-0.75, tenth, -tiny]), 3), (np.array([0.5, -tenth, tiny]), 1)]
    acc = accumulate(items, size=3)
    for got, want in zip(acc.total(), exact_sum(items), strict=True):
        assert Fraction(float(got)) == want


def test_zero_size_and_zero_weight() -> None:
    empty = ExactWeightedSum(0)
    empty.add(np.zeros(0), 4)
    assert empty.total().shape == (0,)
    assert empty.total_weight == 4
    acc = ExactWeightedSum(2)
    acc.add(np.array([123.0, -5.0]), 0)
    np.testing.assert_array_equal(acc.total(), [0.0, 0.0])
    assert (acc.count, acc.total_weight) == (1, 0)


@pytest.mark.parametrize(
    ("value", "weight"),
    [(2.0**30, 1), (-(2.0**30), 1), (2.0**20, 2**10), (1.0, 2**30), (np.inf, 1), (-np.inf, 1)],
)
def test_weighted_values_out_of_range_raise(value: float, weight: int) -> None:
    acc = ExactWeightedSum(2)
    with pytest.raises(AggregationError, match=r"exceeds 2\*\*30"):
        acc.add(np.array([0.0, value]), weight)
    assert (acc.count, acc.total_weight) == (0, 0)  # a refused vector leaves no trace


def test_largest_allowed_value_is_summed() -> None:
    acc = ExactWeightedSum(1)
    acc.add(np.array([2.0**30 - 2.0**-16]), 1)
    acc.add(np.array([-(2.0**30) + 1]), 1)
    assert acc.total()[0] == 1 - 2.0**-16


def test_negative_weight_raises() -> None:
    acc = ExactWeightedSum(1)
    with pytest.raises(AggregationError, match=">= 0"):
        acc.add(np.array([1.0]), -1)


def test_wrong_size_raises() -> None:
    with pytest.raises(AggregationError, match="expected 3"):
        ExactWeightedSum(3).add(np.zeros(2), 1)


def test_add_limit_is_enforced_and_the_worst_case_low_words_do_not_overflow() -> None:
    # Each add puts exactly 2**47 into the low word (remainder rounds up to one unit), so
    # 2**16 adds fill 64 bits: the sum must still come out right, and one more is refused.
    value = (1 - 2.0**-49) * 2.0**-16
    acc = ExactWeightedSum(1)
    vector = np.array([value])
    for _ in range(2**16):
        acc.add(vector, 1)
    want = Fraction(value) * 2**16
    assert abs(Fraction(float(acc.total()[0])) - want) <= Fraction(2**16, 2**63)
    with pytest.raises(AggregationError, match="at most 65536"):
        acc.add(vector, 1)


def _tiny_float32_terms(count: int) -> list[tuple[np.ndarray, int]]:
    # float32 values near 1e-12 keep all 47 low-word bits busy, as tiny updates do
    rng = np.random.default_rng(5)
    return [
        ((rng.standard_normal(8) * 1e-12).astype(np.float32).astype(np.float64), 1)
        for _ in range(count)
    ]


def test_many_clients_sum_is_bit_identical_under_reordering() -> None:
    items = _tiny_float32_terms(300)
    reordered = [items[i] for i in np.random.default_rng(1).permutation(len(items))]
    assert accumulate(items, size=8).total().tobytes() == (
        accumulate(reordered, size=8).total().tobytes()
    )


def test_many_clients_of_ordinary_magnitude_are_order_independent() -> None:
    rng = np.random.default_rng(2)
    items = [
        (rng.standard_normal(16).astype(np.float32).astype(np.float64), int(rng.integers(1, 500)))
        for _ in range(400)
    ]
    reordered = [items[i] for i in rng.permutation(len(items))]
    assert accumulate(items, 16).total().tobytes() == accumulate(reordered, 16).total().tobytes()


def test_nan_raises_aggregation_error() -> None:
    with pytest.raises(AggregationError):
        ExactWeightedSum(2).add(np.array([np.nan, 1.0]), 1)


def test_float32_vector_is_summed_exactly() -> None:
    vector = np.array([0.1, 1 / 3], dtype=np.float32)
    acc = ExactWeightedSum(2)
    acc.add(vector, 7)
    want = [Fraction(float(v)) * 7 for v in vector]
    for got, w in zip(acc.total(), want, strict=True):
        assert abs(Fraction(float(got)) - w) <= Fraction(2) ** -60


# --- WeightedMetrics --------------------------------------------------------------------

metric_values = st.floats(-1e6, 1e6, allow_nan=False)
metric_items = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(["acc", "loss", "f1"]), metric_values, max_size=3),
        st.integers(0, 1000),
    ),
    max_size=10,
)


@given(metric_items)
def test_metric_means_are_exact_weighted_means(
    items: list[tuple[dict[str, float], int]],
) -> None:
    acc = WeightedMetrics()
    for metrics, weight in items:
        acc.add(metrics, weight)
    means = acc.means()
    for key in ("acc", "loss", "f1"):
        pairs = [(m[key], w) for m, w in items if key in m]
        total_weight = sum(w for _, w in pairs)
        if total_weight == 0:
            assert key not in means
        else:
            want = sum((Fraction(v) * w for v, w in pairs), Fraction(0)) / total_weight
            assert means[key] == float(want)
    assert list(means) == sorted(means)


@given(metric_items, st.data())
@settings(max_examples=50)
def test_metric_means_do_not_depend_on_order(
    items: list[tuple[dict[str, float], int]], data: st.DataObject
) -> None:
    def means(seq: list[tuple[dict[str, float], int]]) -> dict[str, float]:
        acc = WeightedMetrics()
        for metrics, weight in seq:
            acc.add(metrics, weight)
        return acc.means()

    assert means(items) == means(data.draw(st.permutations(items)))


def test_metric_keys_may_differ_per_client() -> None:
    acc = WeightedMetrics()
    acc.add({"acc": 0.5}, 10)
    acc.add({"acc": 1.0, "loss": 2.0}, 30)
    acc.add({"loss": 4.0}, 10)
    assert acc.means() == {"acc": 0.875, "loss": 2.5}


@settings(max_examples=300, deadline=None)
@given(
    vector=hnp.arrays(np.float32, SIZE, elements=st.floats(width=32)).map(
        lambda a: a.astype(np.float64)
    ),
    weight=st.integers(min_value=0, max_value=(1 << 29) - 1),
)
def test_within_exact_range_is_the_exact_bound_and_add_applies_it(
    vector: np.ndarray, weight: int
) -> None:
    # the server verifies every reply with it: a verified reply never makes add raise
    exact = all(np.isfinite(v) and abs(Fraction(float(v)) * weight) < 2**30 for v in vector)
    assert within_exact_range(vector, weight) is exact
    acc = ExactWeightedSum(SIZE)
    if exact:
        acc.add(vector, weight)
    else:
        with pytest.raises(AggregationError, match="exceeds 2"):
            acc.add(vector, weight)
