"""Reply verification: every way a reply can be wrong is refused with its typed error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fedhive.core.messages import ClientConfig, EvaluateReply, EvaluateTask, FitReply, FitTask
from fedhive.core.weights import Weights
from fedhive.errors import (
    ClientError,
    DTypeMismatchError,
    FedhiveError,
    NameMismatchError,
    NonFiniteError,
    ShapeMismatchError,
    ValidationError,
)
from fedhive.server.verify import MAX_EXAMPLES, verify_evaluate_reply, verify_fit_reply

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
    verify_fit_reply(fit_reply(num_examples=MAX_EXAMPLES), TASK, LAYOUT)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"client_id": "c2"}, ValidationError, "reply from 'c2' for round 4"),
        ({"round": 3}, ValidationError, "for round 3 does not match"),
        ({"version": "cd" * 32}, ValidationError, "model version cdcdcdcdcdcd"),
        ({"num_examples": -1}, ValidationError, r"num_examples must be in \[0, "),
        ({"num_examples": MAX_EXAMPLES + 1}, ValidationError, "num_examples must be in"),
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
