"""The round loop's verification path: one client's reply can fail only that client.

Clients here are scripted: each answers its task with a reply built from the published
model, so a test states exactly what a (malicious) client sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from fedhive.core.messages import (
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
)
from fedhive.core.version import ModelVersion
from fedhive.core.weights import Weights
from fedhive.server.history import RoundRecord
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.verify import ReplyPolicy
from fedhive.strategy import (
    Algorithm,
    Control,
    DifferentialPrivacy,
    DpMode,
    ServerAdagrad,
    ServerAdam,
    ServerYogi,
    StrategyState,
    scaffold,
)
from fedhive.strategy.base import Strategy

MODEL = Weights({"w": np.zeros(3, np.float32)})
HONEST = [f"h{i}" for i in range(5)]
STEP = 0.01

Answer = Callable[[FitTask, Weights], FitReply]


def answer(
    value: float = STEP, examples: int = 100, metrics: Mapping[str, float] | None = None
) -> Answer:
    """A client that moves every published tensor (control variates too) by ``value``."""

    def reply(task: FitTask, published: Weights) -> FitReply:
        update = Weights({k: np.full_like(v, value) for k, v in published.items()})
        return FitReply(
            client_id=task.client_id,
            round=task.round,
            version=task.version,
            update=update,
            num_examples=examples,
            metrics=dict(metrics or {}),
        )

    return reply


@dataclass
class Scripted:
    """A transport whose clients answer as scripted (fit) or with a fixed claim (evaluate)."""

    answers: Mapping[str, Answer]
    evaluated_examples: Mapping[str, int] | None = None

    def client_ids(self) -> Sequence[str]:
        return sorted(self.answers)

    def fit(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, quorum: int | None = None
    ) -> Iterator[FitReply | Failure]:
        for task in tasks:
            yield self.answers[task.client_id](task, model.weights)

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateReply | Failure]:
        claims = self.evaluated_examples or {}
        for task in tasks:
            yield EvaluateReply(
                client_id=task.client_id,
                round=task.round,
                loss=1.0 if task.client_id in claims else 0.0,
                num_examples=claims.get(task.client_id, 10),
            )

    def close(self) -> None:
        pass


def one_round(
    strategy: Strategy, answers: Mapping[str, Answer], **loop: object
) -> tuple[RoundRecord, Weights, StrategyState]:
    transport = Scripted({**{cid: answer() for cid in HONEST}, **answers})
    result = RoundLoop(strategy=strategy, transport=transport, seed=0, **loop).run(MODEL, 1)  # type: ignore[arg-type]
    return result.history[0], result.weights, result.state


STRATEGIES = {
    "fedavg": Algorithm(),
    "fedprox": Algorithm(),  # FedProx differs on the client only (the proximal term)
    "fedadam": Algorithm(server_optimizer=ServerAdam(learning_rate=0.1)),
    "fedyogi": Algorithm(server_optimizer=ServerYogi(learning_rate=0.1)),
    "fedadagrad": Algorithm(server_optimizer=ServerAdagrad(learning_rate=0.1)),
    "dp-distributed": Algorithm(
        transforms=(
            DifferentialPrivacy(mode=DpMode.DISTRIBUTED, noise_multiplier=1.0, noise_seed=0),
        )
    ),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize(
    ("value", "examples"), [(2.0**31, 100), (2.0, 1 << 29), (2.0**15, 1 << 16)]
)
def test_one_huge_update_fails_its_client_not_the_round(
    name: str, value: float, examples: int
) -> None:
    # F01: a finite 2**31 (or a moderate value at a large weight) made the exact sum raise,
    # and the round was "not committed" for everyone.
    record, weights, _ = one_round(STRATEGIES[name], {"evil": answer(value, examples)})
    assert record.committed, record.note
    assert record.fit.succeeded == len(HONEST)
    assert dict(record.fit.failures) == {"verify:validation": 1}
    assert record.fit.contributors == HONEST
    assert np.all(np.abs(weights["w"]) < 1.0)


def test_the_mean_of_the_others_is_unchanged_by_the_refused_client() -> None:
    record, weights, _ = one_round(Algorithm(), {"evil": answer(2.0**31)})
    alone, reference, _ = one_round(Algorithm(), {})
    assert record.committed
    assert alone.committed
    np.testing.assert_array_equal(weights["w"], reference["w"])
    np.testing.assert_allclose(weights["w"], np.full(3, STEP, np.float32), rtol=1e-6)


def test_a_claim_above_the_cap_fails_its_client() -> None:
    # F02: 2**29 examples with an ordinary update used to take ~100 % of the weight
    record, weights, _ = one_round(Algorithm(), {"heavy": answer(1.0, 1 << 29)})
    assert record.committed
    assert dict(record.fit.failures) == {"verify:validation": 1}
    np.testing.assert_allclose(weights["w"], np.full(3, STEP, np.float32), rtol=1e-6)


def test_the_round_loop_applies_its_policy_cap() -> None:
    policy = ReplyPolicy(max_examples=100)
    record, _, _ = one_round(Algorithm(), {"big": answer(STEP, 101)}, policy=policy)
    assert dict(record.fit.failures) == {"verify:validation": 1}
    record, _, _ = one_round(Algorithm(), {"big": answer(STEP, 100)}, policy=policy)
    assert record.fit.failed == 0


def test_the_cap_bounds_a_clients_weight_in_federated_evaluation() -> None:
    transport = Scripted({cid: answer() for cid in HONEST}, evaluated_examples={"h0": 1 << 29})
    loop = RoundLoop(
        strategy=Algorithm(fraction_evaluate=1.0), transport=transport, seed=0, federated_every=1
    )
    record = loop.run(MODEL, 1).history[0]
    assert dict(record.evaluate.failures) == {"verify:validation": 1}
    assert record.federated["loss"] == 0.0  # h0's loss 1.0 at 2**29 examples was refused


def test_scaffold_survives_one_huge_control_variate_change() -> None:
    # F01 through SCAFFOLD's dc sum: a dc of 2**31 aborted the round
    def huge_dc(task: FitTask, published: Weights) -> FitReply:
        reply = answer()(task, published)
        model, aux = reply.update.split_aux()
        aux = Weights({k: np.full_like(v, 2.0**31) for k, v in aux.items()})
        return FitReply(
            client_id=reply.client_id,
            round=reply.round,
            version=reply.version,
            update=model.join(aux),
            num_examples=reply.num_examples,
        )

    record, _, state = one_round(scaffold(), {"evil": huge_dc})
    assert record.committed, record.note
    assert dict(record.fit.failures) == {"verify:validation": 1}
    np.testing.assert_allclose(state.of(Control).c, np.full(3, STEP), rtol=1e-6)


def test_a_client_dp_metric_never_becomes_the_runs_privacy_report() -> None:
    # F17: a non-DP run reported privacy={'epsilon': 0.5, 'delta': 1e-9}
    liar = answer(metrics={"dp.epsilon": 0.5, "dp.delta": 1e-9})
    record, _, _ = one_round(Algorithm(), {"liar": liar})
    assert record.privacy is None
    assert not any(key.startswith("dp.") or key in {"epsilon", "delta"} for key in record.train)
    assert dict(record.fit.failures) == {"verify:validation": 1}
