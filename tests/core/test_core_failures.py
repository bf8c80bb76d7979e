"""Failure stages and kinds: one kind per fedhive error class, a user's error keeps its type."""

from __future__ import annotations

import pytest

from fedhive.core.failures import CLIENT_STAGES, FailureKind, Stage, kind_of
from fedhive.core.messages import Failure
from fedhive.errors import (
    ClientError,
    MissingDependencyError,
    NonFiniteError,
    PeerRejectedError,
    PrivacyBudgetError,
    SecAggError,
    ShapeMismatchError,
    SignatureError,
    TransportError,
    ValidationError,
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ValidationError("x"), FailureKind.VALIDATION),
        (ShapeMismatchError("x"), FailureKind.SHAPE_MISMATCH),
        (NonFiniteError("x"), FailureKind.NON_FINITE),
        (SignatureError("x"), FailureKind.SIGNATURE),
        (PrivacyBudgetError("x"), FailureKind.BUDGET_EXCEEDED),
        (SecAggError("x"), FailureKind.SECAGG),
        (TransportError("x"), FailureKind.TRANSPORT),
        (PeerRejectedError("x"), FailureKind.PEER_REJECTED),
        (ClientError("x"), FailureKind.CLIENT_ERROR),
    ],
)
def test_a_fedhive_error_is_the_kind_of_its_class(error: Exception, kind: FailureKind) -> None:
    assert kind_of(error) is kind


def test_an_error_without_a_kind_of_its_own_takes_its_nearest_ancestors() -> None:
    class OddShapeError(ShapeMismatchError):
        pass

    assert kind_of(OddShapeError("x")) is FailureKind.SHAPE_MISMATCH
    assert kind_of(MissingDependencyError("torch")) is FailureKind.CLIENT_ERROR


def test_a_users_exception_is_a_client_error_that_keeps_its_type_name() -> None:
    failure = Failure.of("c1", 3, Stage.FIT, ValueError("bad batch"))
    assert (failure.stage, failure.kind, failure.detail) == (
        Stage.FIT,
        FailureKind.CLIENT_ERROR,
        "ValueError",
    )
    assert failure.key == "fit:client_error"
    assert failure.message == "bad batch"


def test_a_fedhive_error_needs_no_detail_beside_its_kind() -> None:
    failure = Failure.of("c1", 3, Stage.VERIFY, ShapeMismatchError("w: (2,) != (3,)"))
    assert (failure.key, failure.detail) == ("verify:shape_mismatch", "")


def test_a_client_reports_only_its_own_stages() -> None:
    own = {Stage.FIT, Stage.EVALUATE, Stage.BUDGET, Stage.PRIVACY, Stage.COMPRESS, Stage.SECAGG}
    assert own == CLIENT_STAGES
