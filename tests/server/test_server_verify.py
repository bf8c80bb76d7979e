"""Reply verification: every way a reply can be wrong is refused with its typed error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fedhive.core.messages import (
    ClientConfig,
    EvaluateReply,
    EvaluateTask,
    FitReply,
    FitTask,
    SecAggReply,
)
from fedhive.core.weights import Weights
from fedhive.errors import (
    ClientError,
    ConfigError,
    DTypeMismatchError,
    FedhiveError,
    NameMismatchError,
    NonFiniteError,
    ShapeMismatchError,
    ValidationError,
)
from fedhive.server.verify import (
    DEFAULT_MAX_EXAMPLES,
    MAX_EXAMPLES,
    ReplyPolicy,
    verify_evaluate_reply,
    verify_fit_reply,
    verify_secagg_reply,
)
from fedhive.strategy.aggregate import ExactWeightedSum

MODEL = Weights({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)})
LAYOUT = MODEL.layout()
VERSION = "ab" * 32
TASK = FitTask(round=4, client_id="c1", version=VERSION, seed=1, config=ClientConfig())
EVAL_TASK = EvaluateTask(round=4, client_id="c1", version=VERSION, seed=1, config=ClientConfig())


def update(**arrays: np.ndarray) -> Weights:
    base = {"w": np.full((2, 3), 0.1, np.float32), "b": np.full(3, -0.2, np.float32)}
    return Weights({**base, **arrays})


def fit_reply(**changes: Any) -> FitReply:
    fields: dict[str, Any] = {
        "client_id": "c1",
        "round": 4,
        "version": VERSION,
        "update": update(),
        "num_examples": 100,
        "metrics": {"loss": 0.3, "acc": np.float32(0.9)},
    }
    return FitReply(**{**fields, **changes})


def eval_reply(**changes: Any) -> EvaluateReply:
    fields: dict[str, Any] = {
        "client_id": "c1",
        "round": 4,
        "loss": 0.7,
        "num_examples": 50,
        "metrics": {"acc": 0.5},
    }
    return EvaluateReply(**{**fields, **changes})


def test_a_valid_fit_reply_passes() -> None:
    verify_fit_reply(fit_reply(), TASK, LAYOUT)
    verify_fit_reply(fit_reply(num_examples=0, metrics={}), TASK, LAYOUT)
    verify_fit_reply(fit_reply(num_examples=DEFAULT_MAX_EXAMPLES), TASK, LAYOUT)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"client_id": "c2"}, ValidationError, "reply from 'c2' for round 4"),
        ({"round": 3}, ValidationError, "for round 3 does not match"),
        ({"version": "cd" * 32}, ValidationError, "model version cdcdcdcdcdcd"),
        ({"num_examples": -1}, ValidationError, r"num_examples must be in \[0, "),
        ({"num_examples": DEFAULT_MAX_EXAMPLES + 1}, ValidationError, "max_examples"),
        ({"update": update(b=np.full(3, 2.0**31, np.float32))}, ValidationError, "exact"),
        ({"metrics": {"dp.epsilon": 0.5}}, ValidationError, "reserved"),
        ({"num_examples": True}, ClientError, "num_examples must be an int"),
        ({"num_examples": 10.0}, ClientError, "num_examples must be an int"),
        ({"update": update(w=np.zeros((3, 2), np.float32))}, ShapeMismatchError, "'w'"),
        ({"update": update(b=np.zeros(3, np.float64))}, DTypeMismatchError, "'b'"),
        ({"update": update(b=np.array([0, np.nan, 0], np.float32))}, NonFiniteError, "'b'"),
        ({"update": update(w=np.full((2, 3), np.inf, np.float32))}, NonFiniteError, "'w'"),
        ({"update": Weights({"w": np.zeros((2, 3), np.float32)})}, NameMismatchError, "'b'"),
        (
            {"update": Weights({"b": update()["b"], "w": update()["w"]})},
            NameMismatchError,
            "order differs",
        ),
        ({"metrics": {"acc": math.nan}}, ClientError, r"metrics\['acc'\] is not finite"),
        ({"metrics": {"acc": -math.inf}}, ClientError, "is not finite"),
        ({"metrics": {"acc": None}}, ClientError, "is not a number"),
    ],
)
def test_each_bad_fit_reply_raises_its_typed_error(
    changes: dict[str, Any], error: type[FedhiveError], match: str
) -> None:
    with pytest.raises(error, match=match):
        verify_fit_reply(fit_reply(**changes), TASK, LAYOUT)


def test_version_mismatch_carries_client_and_round() -> None:
    with pytest.raises(ValidationError) as info:
        verify_fit_reply(fit_reply(version="00" * 32), TASK, LAYOUT)
    assert (info.value.client_id, info.value.round) == ("c1", 4)


def test_identity_is_checked_before_the_update() -> None:
    # a reply for another client is refused as such, even if its update is also bad
    bad = fit_reply(client_id="c2", update=update(b=np.array([np.nan] * 3, np.float32)))
    with pytest.raises(ValidationError, match="reply from 'c2'"):
        verify_fit_reply(bad, TASK, LAYOUT)


def test_a_valid_evaluate_reply_passes() -> None:
    verify_evaluate_reply(eval_reply(), EVAL_TASK)
    verify_evaluate_reply(eval_reply(num_examples=0, metrics={}), EVAL_TASK)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"client_id": "x"}, ValidationError, "reply from 'x'"),
        ({"round": 5}, ValidationError, "for round 5 does not match"),
        ({"num_examples": -5}, ValidationError, "num_examples must be in"),
        ({"num_examples": False}, ClientError, "num_examples must be an int"),
        ({"loss": math.nan}, ClientError, r"metrics\['loss'\] is not finite"),
        ({"loss": math.inf}, ClientError, r"metrics\['loss'\] is not finite"),
        ({"metrics": {"acc": math.nan}}, ClientError, r"metrics\['acc'\] is not finite"),
    ],
)
def test_each_bad_evaluate_reply_raises_its_typed_error(
    changes: dict[str, Any], error: type[FedhiveError], match: str
) -> None:
    with pytest.raises(error, match=match):
        verify_evaluate_reply(eval_reply(**changes), EVAL_TASK)


def test_a_claim_above_the_servers_cap_is_refused() -> None:
    # F02: 2**29 examples used to be accepted (and took ~100 % of the FedAvg weight)
    with pytest.raises(ValidationError, match=r"num_examples must be in \[0, 65536\]"):
        verify_fit_reply(fit_reply(num_examples=1 << 29), TASK, LAYOUT)
    with pytest.raises(ValidationError, match="max_examples"):
        verify_evaluate_reply(eval_reply(num_examples=1 << 29), EVAL_TASK)


def test_the_cap_is_the_servers_policy() -> None:
    small = ReplyPolicy(max_examples=10)
    verify_fit_reply(fit_reply(num_examples=10), TASK, LAYOUT, small)
    with pytest.raises(ValidationError, match=r"\[0, 10\]"):
        verify_fit_reply(fit_reply(num_examples=11), TASK, LAYOUT, small)
    with pytest.raises(ValidationError, match=r"\[0, 10\]"):
        verify_evaluate_reply(eval_reply(num_examples=11), EVAL_TASK, small)
    verify_fit_reply(
        fit_reply(num_examples=MAX_EXAMPLES), TASK, LAYOUT, ReplyPolicy(max_examples=MAX_EXAMPLES)
    )


@pytest.mark.parametrize("cap", [0, MAX_EXAMPLES + 1, True, 2.0])
def test_a_cap_out_of_range_is_a_config_error(cap: Any) -> None:
    with pytest.raises(ConfigError, match="max_examples"):
        ReplyPolicy(max_examples=cap)


@pytest.mark.parametrize(
    ("value", "examples"),
    [(2.0**31, 1), (2.0**30, 0), (2.0, 1 << 29), (2.0**15, 1 << 16)],
)
def test_an_update_the_exact_sum_would_refuse_fails_verification(
    value: float, examples: int
) -> None:
    # F01: these passed verification, then made ExactWeightedSum raise for the whole round
    reply = fit_reply(
        update=update(b=np.array([0.0, -value, 0.0], np.float32)), num_examples=examples
    )
    policy = ReplyPolicy(max_examples=MAX_EXAMPLES)
    with pytest.raises(ValidationError, match="exact aggregation range"):
        verify_fit_reply(reply, TASK, LAYOUT, policy)


def test_every_verified_update_fits_the_exact_sum_at_its_weight_and_at_weight_one() -> None:
    policy = ReplyPolicy(max_examples=MAX_EXAMPLES)
    below = np.nextafter(np.float32(2.0**30 / (1 << 16)), np.float32(0))
    for examples, value in [
        (0, np.nextafter(np.float32(2.0**30), np.float32(0))),
        (1 << 16, below),
    ]:
        reply = fit_reply(
            update=update(w=np.full((2, 3), value, np.float32)), num_examples=examples
        )
        verify_fit_reply(reply, TASK, LAYOUT, policy)
        total = ExactWeightedSum(LAYOUT.total_size)
        total.add(LAYOUT.flatten(reply.update), examples)
        total.add(LAYOUT.flatten(reply.update), 1)


def test_a_reserved_dp_metric_is_refused_in_fit_and_evaluate_replies() -> None:
    # F17: a client's "dp.epsilon" became the run's privacy report
    with pytest.raises(ValidationError, match="reserved"):
        verify_fit_reply(fit_reply(metrics={"dp.epsilon": 0.5, "loss": 1.0}), TASK, LAYOUT)
    with pytest.raises(ValidationError, match="reserved"):
        verify_evaluate_reply(eval_reply(metrics={"dp.delta": 1e-9}), EVAL_TASK)
    verify_fit_reply(fit_reply(metrics={"dpsgd_epsilon": 0.5}), TASK, LAYOUT)


def secagg_reply(**changes: Any) -> SecAggReply:
    fields: dict[str, Any] = {
        "client_id": "c1",
        "round": 4,
        "version": VERSION,
        "num_examples": 100,
        "message": b"keys",
        "metrics": {"loss": 0.3},
    }
    return SecAggReply(**{**fields, **changes})


def test_a_valid_secagg_reply_passes() -> None:
    verify_secagg_reply(secagg_reply(), TASK)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"client_id": "c2"}, ValidationError, "reply from 'c2'"),
        ({"round": 5}, ValidationError, "for round 5 does not match"),
        ({"version": "cd" * 32}, ValidationError, "model version cdcdcdcdcdcd"),
        ({"num_examples": 1 << 62}, ValidationError, "max_examples"),
        ({"num_examples": -1}, ValidationError, "num_examples must be in"),
        ({"metrics": {"dp.epsilon": 0.1}}, ValidationError, "reserved"),
        ({"metrics": {"acc": math.nan}}, ClientError, "is not finite"),
    ],
)
def test_each_bad_secagg_reply_raises_its_typed_error(
    changes: dict[str, Any], error: type[FedhiveError], match: str
) -> None:
    # F03: the upload header's num_examples (up to 2**64 - 1) was never checked
    with pytest.raises(error, match=match):
        verify_secagg_reply(secagg_reply(**changes), TASK)
