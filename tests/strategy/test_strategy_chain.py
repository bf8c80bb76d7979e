"""Which parts compose (fedhive.strategy.chain): every refusal names the key to change,
and the combinations the rules allow build."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedhive.core.messages import FitReply
from fedhive.core.weights import Weights
from fedhive.errors import ConfigError
from fedhive.privacy import AdaptiveClipping
from fedhive.strategy import (
    Algorithm,
    Buffered,
    BufferState,
    Control,
    ControlVariates,
    DifferentialPrivacy,
    DpMode,
    Moments,
    PrivacyState,
    Rounds,
    ServerAdam,
    Stateless,
    WeightedMean,
    fedadam,
    fedbuff,
    scaffold,
)
from fedhive.strategy.chain import check_chain
from fedhive.strategy.robust import Bulyan, CoordinateMedian, Krum, NormBound, TrimmedMean

CENTRAL = DifferentialPrivacy(noise_multiplier=1.0, clipping_norm=1.0, noise_seed=0)
DISTRIBUTED = DifferentialPrivacy(mode=DpMode.DISTRIBUTED, noise_seed=0)
ADAPTIVE = DifferentialPrivacy(adaptive=AdaptiveClipping(), noise_seed=0)
BOUND = NormBound(inner=WeightedMean(), max_norm=1.0)
ROBUST = [
    TrimmedMean(trim_fraction=0.2),
    CoordinateMedian(),
    Krum(byzantine=1, multi=2),
    Bulyan(byzantine=1),
]
ROBUST_IDS = ["trimmed_mean", "median", "krum", "bulyan"]
WEIGHTS = Weights({"w": np.zeros(3)})

# (transforms, aggregator, schedule, the message's start: the key to change)
REFUSED: list[tuple[tuple[Any, ...], Any, Any, str]] = [
    # the parts themselves
    ((), "mean", Rounds(), r"^aggregator: must be an aggregator, got 'mean'"),
    ((), None, Rounds(), r"^aggregator: must be an aggregator, got None"),
    ((ControlVariates(), "dp"), WeightedMean(), Rounds(), r"^transforms\[1\]: not an update"),
    # a buffered schedule takes no transforms ...
    ((ControlVariates(),), WeightedMean(), Buffered(), r"^transforms: FedBuff's buffer takes no"),
    ((CENTRAL,), WeightedMean(), Buffered(), r"^transforms: FedBuff's buffer takes no"),
    # ... and only the plain mean
    ((), CoordinateMedian(), Buffered(), r"^aggregator: robust rules .* with FedBuff's buffer"),
    ((), BOUND, Buffered(), r"^aggregator: robust rules \(and max_update_norm\)"),
    # DP comes last, once
    ((CENTRAL, ControlVariates()), WeightedMean(), Rounds(), r"^transforms: differential privacy"),
    ((CENTRAL, CENTRAL), WeightedMean(), Rounds(), r"^transforms: differential privacy must"),
    # central DP clips already: no max_update_norm
    ((CENTRAL,), BOUND, Rounds(), r"^max_update_norm: differential privacy already clips"),
    (
        (ControlVariates(), CENTRAL),
        NormBound(inner=CoordinateMedian(), max_norm=1.0),
        Rounds(),
        r"^max_update_norm: ",
    ),
    ((DISTRIBUTED,), BOUND, Rounds(), r"^max_update_norm: "),
    # distributed DP: the plain mean, no control variates
    ((DISTRIBUTED,), CoordinateMedian(), Rounds(), r"^aggregator: distributed DP needs the mean"),
    ((DISTRIBUTED,), TrimmedMean(), Rounds(), r"^aggregator: distributed DP needs the mean"),
    (
        (ControlVariates(), DISTRIBUTED),
        WeightedMean(),
        Rounds(),
        r'^privacy\.mode: distributed DP with SCAFFOLD .* use mode = "central"',
    ),
    # adaptive clipping is steered by one release per round
    (
        (ControlVariates(), ADAPTIVE),
        WeightedMean(),
        Rounds(),
        r"^privacy\.adaptive: adaptive clipping .* SCAFFOLD makes two",
    ),
    ((ControlVariates(), ADAPTIVE), CoordinateMedian(), Rounds(), r"^privacy\.adaptive: "),
]
REFUSED_IDS = [
    "aggregator-not-callable",
    "aggregator-none",
    "transform-not-a-transform",
    "buffered-scaffold",
    "buffered-dp",
    "buffered-median",
    "buffered-norm-bound",
    "dp-not-last",
    "dp-twice",
    "central-dp-norm-bound",
    "scaffold-central-dp-bounded-median",
    "distributed-dp-norm-bound",
    "distributed-dp-median",
    "distributed-dp-trimmed-mean",
    "distributed-dp-scaffold",
    "adaptive-scaffold",
    "adaptive-scaffold-median",
]


@pytest.mark.parametrize(
    ("transforms", "aggregator", "schedule", "message"), REFUSED, ids=REFUSED_IDS
)
def test_check_chain_refuses_parts_that_do_not_compose(
    transforms: tuple[Any, ...], aggregator: Any, schedule: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_chain(transforms, aggregator, schedule)


@pytest.mark.parametrize(
    ("transforms", "aggregator", "schedule", "message"), REFUSED, ids=REFUSED_IDS
)
def test_an_algorithm_of_such_parts_is_refused_when_built(
    transforms: tuple[Any, ...], aggregator: Any, schedule: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Algorithm(transforms=transforms, aggregator=aggregator, schedule=schedule)


def test_the_factories_are_refused_the_same() -> None:
    with pytest.raises(ConfigError, match=r"^transforms: FedBuff's buffer takes no"):
        fedbuff(transforms=(CENTRAL,))
    with pytest.raises(ConfigError, match=r"^aggregator: robust rules"):
        fedbuff(aggregator=TrimmedMean())
    with pytest.raises(ConfigError, match=r"^privacy\.mode: "):
        scaffold(transforms=(DISTRIBUTED,))
    with pytest.raises(ConfigError, match=r"^privacy\.adaptive: "):
        scaffold(transforms=(ADAPTIVE,))
    with pytest.raises(ConfigError, match=r"^max_update_norm: "):
        fedadam(aggregator=BOUND, transforms=(CENTRAL,))
    with pytest.raises(ConfigError, match=r"^aggregator: distributed DP needs the mean"):
        fedadam(aggregator=Krum(byzantine=1), transforms=(DISTRIBUTED,))


# --- what composes -------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ROBUST, ids=ROBUST_IDS)
def test_scaffold_with_central_dp_and_a_robust_rule_builds(rule: Any) -> None:
    algorithm = scaffold(aggregator=rule, transforms=(CENTRAL,))
    assert algorithm.transforms == (ControlVariates(), CENTRAL)
    assert algorithm.aggregator == rule
    assert algorithm.privacy == CENTRAL
    assert algorithm.releases == 2  # the model update and the control-variate change
    check_chain(algorithm.transforms, rule, Rounds())
    state = algorithm.initial_state(WEIGHTS)
    assert [type(p) for p in state.parts] == [Stateless, Control, PrivacyState, Stateless]
    algorithm.check_state(state, WEIGHTS)
    # and it aggregates: seven clients (Bulyan with one Byzantine client needs 4f + 3)
    replies = [
        FitReply(
            client_id=f"c{i}",
            round=1,
            version="v",
            update=Weights({"w": np.full(3, 0.1 * i), "@scaffold/w": np.full(3, 0.01 * i)}),
            num_examples=1,
        )
        for i in range(7)
    ]
    state, new, _ = algorithm.aggregate_fit(state, 1, WEIGHTS, iter(replies))
    assert new["w"].shape == (3,)
    assert np.isfinite(new["w"]).all()
    assert state.of(Control).c.shape == (3,)
    assert state.of(Control).c.any()
    algorithm.check_state(state, WEIGHTS)


@pytest.mark.parametrize("rule", [WeightedMean(), *ROBUST], ids=["mean", *ROBUST_IDS])
def test_central_dp_takes_the_mean_or_a_robust_rule(rule: Any) -> None:
    for transforms in ((CENTRAL,), (ControlVariates(), CENTRAL)):
        assert Algorithm(transforms=transforms, aggregator=rule).privacy == CENTRAL


def test_distributed_and_adaptive_dp_build_without_scaffold_on_the_mean() -> None:
    for dp in (DISTRIBUTED, ADAPTIVE):
        algorithm = Algorithm(transforms=(dp,))
        assert algorithm.privacy == dp
        assert algorithm.releases == 1
    assert scaffold(transforms=(CENTRAL,)).privacy == CENTRAL  # fixed clipping is fine


@pytest.mark.parametrize(
    "dp", [CENTRAL, DISTRIBUTED, ADAPTIVE], ids=["central", "distributed", "adaptive"]
)
def test_fedadam_with_dp_builds(dp: DifferentialPrivacy) -> None:
    algorithm = fedadam(server_learning_rate=0.1, transforms=(dp,))
    assert isinstance(algorithm.server_optimizer, ServerAdam)
    assert algorithm.privacy == dp
    assert algorithm.releases == 1
    state = algorithm.initial_state(WEIGHTS)
    assert isinstance(state.parts[0], Moments)
    assert isinstance(state.parts[1], PrivacyState)
    algorithm.check_state(state, WEIGHTS)


def test_fedbuff_builds_plain() -> None:
    algorithm = fedbuff(buffer_size=3, concurrency=5)
    assert algorithm.transforms == ()
    assert isinstance(algorithm.aggregator, WeightedMean)
    assert algorithm.buffered == Buffered(buffer_size=3, concurrency=5)
    assert algorithm.privacy is None
    check_chain((), WeightedMean(), algorithm.schedule)
    state = algorithm.initial_state(WEIGHTS)
    assert state.of(BufferState).version == 0
    assert fedbuff(server_optimizer=ServerAdam()).schedule == Buffered()  # any optimizer


def test_plain_synchronous_chains_build() -> None:
    for transforms in ((), (ControlVariates(),)):
        for rule in (WeightedMean(), BOUND, *ROBUST):
            check_chain(transforms, rule, Rounds())
            Algorithm(transforms=transforms, aggregator=rule)
