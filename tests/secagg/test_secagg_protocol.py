"""Whole SecAgg+ rounds in memory: sums match the plaintext, dropouts are survived, and
too many dropouts abort cleanly with nothing unmasked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.core.rng import SeedStream
from fedhive.errors import SecAggError
from fedhive.secagg import (
    ClientStatus,
    SecAggParams,
    SecAggResult,
    Stage,
    decode_message,
    quantize,
    run_local_round,
    server_start,
)
from fedhive.secagg.messages import Message

# n = 40, delta = 0.3 needs weak sigma/eta at this small n: k = 34 (sparse), t = 18.
WIDE = SecAggParams(
    num_clients=40,
    dropout_fraction=0.3,
    corruption_fraction=0.05,
    security_bits=8,
    correctness_bits=1,
)
# n = 30 with delta = 0.1: k = 10, t = 6, a genuinely sparse graph.
SPARSE = SecAggParams(
    num_clients=30,
    dropout_fraction=0.1,
    corruption_fraction=0.05,
    security_bits=12,
    correctness_bits=2,
)
STAGES = [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASKING]


def cohort(
    params: SecAggParams, size: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    rng = SeedStream(seed).numpy()
    ids = [f"client-{i:03d}" for i in range(params.num_clients)]
    vectors = {c: rng.uniform(-1.5, 1.5, size) for c in ids}
    weights = {c: int(rng.integers(1, 200)) for c in ids}
    return vectors, weights


def assert_sum_of(
    result: SecAggResult,
    clients: list[str],
    vectors: dict[str, np.ndarray],
    weights: dict[str, int],
    params: SecAggParams,
) -> None:
    result.raise_if_aborted()
    assert sorted(result.included) == sorted(clients)
    r = params.clip_range
    exact = sum(weights[c] * np.clip(vectors[c], -r, r) for c in clients)
    assert result.weighted_sum is not None
    bound = len(clients) * quantize.step(params) * (1 + 2**-8) + 1e-12 * np.abs(exact)
    assert np.all(np.abs(result.weighted_sum - exact) <= bound)
    assert result.total_weight == sum(weights[c] for c in clients)


@settings(max_examples=6, deadline=None)
@given(
    n=st.sampled_from([8, 10, 12]),
    size=st.integers(1, 40),
    bits=st.sampled_from([32, 64]),
    clip=st.sampled_from([0.5, 1.0, 3.0]),
    seed=st.integers(0, 2**32),
)
def test_unmasked_aggregate_is_the_plaintext_weighted_sum(
    n: int, size: int, bits: int, clip: float, seed: int
) -> None:
    params = SecAggParams(
        num_clients=n,
        dropout_fraction=0.1,
        corruption_fraction=0.05,
        security_bits=8,
        correctness_bits=2,
        ring_bits=bits,
        clip_range=clip,
        max_weight=1000,
    )
    vectors, weights = cohort(params, size, seed)
    weights = {c: min(w, 1000) for c, w in weights.items()}
    outcome = run_local_round(
        params=params, vectors=vectors, weights=weights, round=seed % 7, graph_seed=seed
    )
    assert_sum_of(outcome.result, sorted(vectors), vectors, weights, params)
    assert set(outcome.result.statuses.values()) == {ClientStatus.OK}


@pytest.mark.parametrize("stage", STAGES)
def test_thirty_percent_vanishing_at_a_stage_still_completes(stage: Stage) -> None:
    vectors, weights = cohort(WIDE, 1000, seed=1)
    ids = sorted(vectors)
    gone = list(SeedStream(2).child(str(stage)).numpy().choice(ids, 12, replace=False))
    outcome = run_local_round(
        params=WIDE, vectors=vectors, weights=weights, graph_seed=5, dropouts={stage: gone}
    )
    # a client that vanishes while unmasking already sent its input: the sum keeps it
    included = ids if stage is Stage.UNMASKING else [c for c in ids if c not in gone]
    assert_sum_of(outcome.result, included, vectors, weights, WIDE)
    dropped = {c for c, s in outcome.result.statuses.items() if s is not ClientStatus.OK}
    assert dropped == set(gone)
    assert {outcome.result.statuses[c] for c in gone} == {ClientStatus(f"dropped_at_{stage}")}
    assert not outcome.client_refusals
    assert not outcome.server_refusals


def test_dropouts_at_every_stage_of_one_round() -> None:
    vectors, weights = cohort(WIDE, 1000, seed=3)
    ids = sorted(vectors)
    order = list(SeedStream(4).numpy().permutation(ids))
    dropouts = {stage: order[3 * i : 3 * i + 3] for i, stage in enumerate(STAGES)}  # 30 %
    outcome = run_local_round(params=WIDE, vectors=vectors, weights=weights, dropouts=dropouts)
    early = {c for stage in STAGES[:3] for c in dropouts[stage]}
    assert_sum_of(outcome.result, [c for c in ids if c not in early], vectors, weights, WIDE)


def test_sparse_graph_with_dropouts_and_messages_through_bytes() -> None:
    assert SPARSE.degree < SPARSE.num_clients - 1
    vectors, weights = cohort(SPARSE, 500, seed=6)
    ids = sorted(vectors)

    def wire(message: Message) -> Message:
        return decode_message(message.to_bytes())  # as a transport would ship it

    outcome = run_local_round(
        params=SPARSE,
        vectors=vectors,
        weights=weights,
        round=9,
        graph_seed=77,
        dropouts={Stage.MASKED_INPUT: ids[:2], Stage.UNMASKING: ids[2:4]},
        intercept=wire,  # type: ignore[arg-type]
    )
    assert_sum_of(outcome.result, ids[2:], vectors, weights, SPARSE)


def test_a_client_left_with_fewer_than_t_neighbours_unravels_the_ring_and_aborts() -> None:
    """In a Harary graph with t > k/2 the neighbours of a client share most of its
    neighbours, so pushing one client below t pushes them below t too: the t-core empties
    and the round aborts cleanly (the correctness bound makes this rare, not impossible)."""
    from fedhive.secagg.graph import harary_graph

    vectors, weights = cohort(SPARSE, 50, seed=8)
    ids = sorted(vectors)
    graph = harary_graph(ids, SPARSE.degree, seed=3)
    lonely = ids[0]
    gone = list(graph.of(lonely)[: SPARSE.degree - SPARSE.threshold + 1])  # leaves t - 1
    outcome = run_local_round(
        params=SPARSE,
        vectors=vectors,
        weights=weights,
        graph_seed=3,
        dropouts={Stage.ADVERTISE_KEYS: gone},
    )
    result = outcome.result
    assert result.aborted
    assert result.weighted_sum is None
    assert result.statuses[lonely] is ClientStatus.EXCLUDED_TOO_FEW_NEIGHBOURS
    assert "neighbours" in result.reasons[lonely]
    assert {result.statuses[c] for c in gone} == {ClientStatus.DROPPED_AT_ADVERTISE_KEYS}


@pytest.mark.parametrize("stage", STAGES)
def test_below_the_threshold_the_round_aborts_and_unmasks_nothing(stage: Stage) -> None:
    vectors, weights = cohort(WIDE, 100, seed=10)
    ids = sorted(vectors)
    outcome = run_local_round(
        params=WIDE, vectors=vectors, weights=weights, dropouts={stage: ids[:25]}
    )
    result = outcome.result
    assert result.aborted
    assert result.weighted_sum is None
    assert result.total_weight is None
    assert result.included == ()
    assert result.abort is not None
    assert result.abort.stage is stage
    with pytest.raises(SecAggError) as caught:
        result.raise_if_aborted()
    assert caught.value.stage == str(stage)
    assert caught.value.round == 0
    with pytest.raises(SecAggError):
        result.mean()


def test_mean_divides_by_the_total_weight() -> None:
    vectors, weights = cohort(SPARSE, 20, seed=12)
    result = run_local_round(params=SPARSE, vectors=vectors, weights=weights).result
    assert result.weighted_sum is not None
    assert result.total_weight is not None
    assert np.allclose(result.mean(), result.weighted_sum / result.total_weight)


@pytest.mark.parametrize("first_drops", [False, True], ids=["survivor", "dropped"])
def test_too_few_live_neighbours_of_one_client_abort_naming_it(first_drops: bool) -> None:
    vectors, weights = cohort(SPARSE, 4, seed=5)
    first = min(vectors)  # the server checks clients in id order
    server, _ = server_start(
        round=0, client_ids=sorted(vectors), params=SPARSE, graph_seed=0, vector_size=4
    )
    neighbours = server.graph.of(first)
    t = SPARSE.threshold
    gone = [*neighbours[: len(neighbours) - t + 1], *([first] if first_drops else [])]
    outcome = run_local_round(
        params=SPARSE, vectors=vectors, weights=weights, dropouts={Stage.MASKED_INPUT: gone}
    )
    abort = outcome.result.abort
    assert abort is not None
    assert abort.client_id == first
    assert abort.stage is Stage.MASKED_INPUT
    who = "a dropped client can reveal its mask key" if first_drops else "a survivor"
    assert f"only {t - 1} neighbours of {who}" in abort.message
    assert outcome.result.weighted_sum is None


def test_a_local_round_needs_one_vector_shape_and_a_weight_per_client() -> None:
    vectors, weights = cohort(SPARSE, 4, seed=5)
    first = min(vectors)
    for bad_vectors, bad_weights in [
        ({**vectors, first: np.zeros(3)}, weights),
        ({c: v.reshape(2, 2) for c, v in vectors.items()}, weights),
        (vectors, {c: w for c, w in weights.items() if c != first}),
    ]:
        with pytest.raises(SecAggError, match="one common 1-d shape, and every client a weight"):
            run_local_round(params=SPARSE, vectors=bad_vectors, weights=bad_weights)
