"""Secure aggregation in the round: answers are verified like plaintext replies, and the
unmasked sum must pass range checks a client's tampering with its own input breaks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest

from fedhive.core.extensions import Weighting
from fedhive.core.messages import ClientConfig, FitTask, SecAggReply
from fedhive.core.version import ModelVersion
from fedhive.errors import AggregateCheckError
from fedhive.secagg import MaskedInput, decode_message
from fedhive.secagg.report import ClientStatus, SecAggResult
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.secure import AggregateCheck, SecureAggregation, checked_mean
from fedhive.simulation.backends.local import LocalBackend
from fedhive.simulation.secure import SecAggDevices
from fedhive.strategy import Algorithm
from fedhive.transport.base import SecureOutcome, StageOutcome
from fedhive.transport.inprocess import InProcessTransport
from lstsq_app import build

CLIENTS = 12
SECURE = SecureAggregation(
    dropout_fraction=0.1, correctness_bits=2, security_bits=10, clip_range=4.0
)
STRATEGY = Algorithm(client_config=ClientConfig(local_epochs=1, learning_rate=0.1))
EXAMPLES = sum(10 + 3 * i for i in range(CLIENTS))  # lstsq_app: client c<i> has 10 + 3i rows
MASK = (1 << 64) - 1


class Tampering(SecAggDevices):
    """Honest devices, except that ``c0`` may lie in its header or shift its masked input
    (it knows its own masks, so it can add any ring vector)."""

    header_examples: int | None = None
    shift: Mapping[int, int] = {}  # ring coordinate (-1: the weight) -> value added

    def fit_secure(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, setup: bytes
    ) -> Iterator[SecureOutcome]:
        lie = self.header_examples
        for outcome in super().fit_secure(tasks, model, setup=setup):
            if isinstance(outcome, SecAggReply) and outcome.client_id == "c0" and lie is not None:
                yield dataclasses.replace(outcome, num_examples=lie)
            else:
                yield outcome

    def exchange(self, round: int, messages: Mapping[str, bytes]) -> Iterator[StageOutcome]:
        for item in super().exchange(round, messages):
            message = decode_message(item[1]) if isinstance(item, tuple) else None
            if not isinstance(message, MaskedInput) or message.client_id != "c0":
                yield item
                continue
            vector = message.vector
            for index, value in self.shift.items():
                vector[index] = (int(vector[index]) + value) & MASK
            yield "c0", MaskedInput.of(round=round, client_id="c0", vector=vector).to_bytes()


def loop(secure: SecureAggregation = SECURE, **tamper: object) -> RoundLoop:
    app = build(CLIENTS)
    inner = InProcessTransport(client_ids=app.client_ids, runner=LocalBackend(app.client.client_fn))
    transport = Tampering(inner, seed=0)
    for key, value in tamper.items():
        setattr(transport, key, value)
    return RoundLoop(strategy=STRATEGY, transport=transport, seed=0, secure=secure)


def test_an_honest_round_commits() -> None:
    record = loop().run(build(CLIENTS).server.initial_weights, 1).history[0]
    assert record.committed, record.note
    assert len(record.fit.contributors) == CLIENTS


def test_a_huge_header_example_count_fails_its_client_not_the_round() -> None:
    # F03: the header's num_examples (2**62) overflowed the aggregate's weight: not committed
    record = loop(header_examples=1 << 62).run(build(CLIENTS).server.initial_weights, 1).history[0]
    assert record.committed, record.note
    assert record.fit.failures == {"verify:validation": 1}
    assert sorted(record.fit.contributors) == sorted(f"c{i}" for i in range(1, CLIENTS))


@pytest.mark.parametrize(
    ("shift", "check"),
    [
        ({0: 1 << 44}, "mean_range"),  # a model coordinate far beyond clip_range
        ({-1: (1 - EXAMPLES) & MASK}, "total_weight"),  # total weight 1
        ({-1: (-EXAMPLES) & MASK}, "total_weight"),  # total weight 0
        ({-1: 1 << 40}, "total_weight"),  # more than |included| * max_weight
    ],
)
def test_a_shifted_masked_input_fails_the_round_naming_the_check(
    shift: dict[int, int], check: str
) -> None:
    # F10: the mean landed anywhere (1e6 with clip_range 1) and only finiteness was checked
    record = loop(shift=shift).run(build(CLIENTS).server.initial_weights, 1).history[0]
    assert not record.committed
    assert f"unmasked aggregate fails {check}" in record.note


def test_uniform_weighting_needs_a_total_weight_of_one_per_client() -> None:
    uniform = dataclasses.replace(SECURE, weighting=Weighting.UNIFORM)
    honest = loop(uniform).run(build(CLIENTS).server.initial_weights, 1).history[0]
    assert honest.committed, honest.note
    record = loop(uniform, shift={-1: 1}).run(build(CLIENTS).server.initial_weights, 1).history[0]
    assert not record.committed
    assert "unmasked aggregate fails uniform_weight" in record.note


def result(weighted_sum: np.ndarray, total_weight: int, count: int = 3) -> SecAggResult:
    included = tuple(f"c{i}" for i in range(count))
    return SecAggResult(
        round=1,
        weighted_sum=weighted_sum,
        total_weight=total_weight,
        included=included,
        statuses=dict.fromkeys(included, ClientStatus.OK),
    )


@pytest.mark.parametrize(
    ("weighted_sum", "total_weight", "weighting", "check"),
    [
        (np.array([13.0, 0.0]), 3, Weighting.EXAMPLES, AggregateCheck.MEAN_RANGE),
        (np.array([np.nan, 0.0]), 3, Weighting.EXAMPLES, AggregateCheck.MEAN_RANGE),
        (np.array([1.0, 0.0]), 1, Weighting.EXAMPLES, AggregateCheck.TOTAL_WEIGHT),
        (np.array([0.0, 0.0]), 0, Weighting.EXAMPLES, AggregateCheck.TOTAL_WEIGHT),
        (np.array([0.0, 0.0]), 3 * 65536 + 1, Weighting.EXAMPLES, AggregateCheck.TOTAL_WEIGHT),
        (np.array([0.0, 0.0]), 4, Weighting.UNIFORM, AggregateCheck.UNIFORM_WEIGHT),
    ],
)
def test_each_failed_check_is_a_typed_error_that_names_it(
    weighted_sum: np.ndarray, total_weight: int, weighting: Weighting, check: AggregateCheck
) -> None:
    secure = dataclasses.replace(SECURE, weighting=weighting)
    with pytest.raises(AggregateCheckError) as info:
        checked_mean(result(weighted_sum, total_weight), secure)
    assert info.value.check == check
    assert str(check) in str(info.value)


def test_a_mean_at_the_clip_range_passes() -> None:
    # three clients at +clip_range with weights 1, 2, 3: the mean is exactly clip_range
    r = SECURE.clip_range
    mean = checked_mean(result(np.array([6 * r, -6 * r]), 6), SECURE)
    np.testing.assert_array_equal(mean, [r, -r])
    uniform = dataclasses.replace(SECURE, weighting=Weighting.UNIFORM)
    np.testing.assert_array_equal(checked_mean(result(np.array([3.0, 0.0]), 3), uniform), [1, 0])
