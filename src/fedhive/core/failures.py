"""Why a task produced no usable reply: the stage that refused it and the kind of failure.

A :class:`~fedhive.core.messages.Failure` names a :class:`Stage` (where in the pipeline
the task failed) and a :class:`FailureKind` (what went wrong). The kind of an exception is
mapped from fedhive's error tree in one place, :func:`kind_of`; any other exception (a
user's ``ValueError``) is a :attr:`FailureKind.CLIENT_ERROR` whose type name the failure
keeps as its ``detail``. Round records count failures by ``stage:kind``
(e.g. ``verify:shape_mismatch``, ``budget:budget_exceeded``), a bounded set of keys.
"""

from __future__ import annotations

from fedhive.core._compat import StrEnum
from fedhive.errors import (
    ClientError,
    CodecError,
    ConfigError,
    DTypeMismatchError,
    NameMismatchError,
    NonFiniteError,
    PeerRejectedError,
    PrivacyBudgetError,
    SecAggError,
    SerializationError,
    ShapeMismatchError,
    SignatureError,
    TransportError,
    ValidationError,
)


class Stage(StrEnum):
    """Where a task failed: a step of the client's pipeline, or of the server's."""

    FIT = "fit"
    """The user's ``Client.fit`` (training, its result, its metrics)."""
    EVALUATE = "evaluate"
    """The user's ``Client.evaluate``."""
    CLIENT_FN = "client_fn"
    """Simulation: building the client for the task (the user's ``client_fn``)."""
    BUDGET = "budget"
    """The device's privacy budget (checked before training, charged after)."""
    PRIVACY = "privacy"
    """The device's DP stage: the task's clipping and noise instructions and applying them."""
    COMPRESS = "compress"
    """The device's compression of its update (the task's ``Compression`` instruction)."""
    SECAGG = "secagg"
    """Secure aggregation: a protocol message, or the protocol's verdict on a client."""
    UPLOAD = "upload"
    """Deployment: the server refused the result's upload (header, chunks, signature)."""
    TRANSPORT = "transport"
    """No result arrived: a deadline passed, the round closed, a worker died."""
    VERIFY = "verify"
    """The server's verification of a reply before aggregation."""
    BUFFER = "buffer"
    """Asynchronous rounds: the buffer refused the update (too stale)."""


CLIENT_STAGES = frozenset(
    {Stage.FIT, Stage.EVALUATE, Stage.BUDGET, Stage.PRIVACY, Stage.COMPRESS, Stage.SECAGG}
)
"""The stages a client may report a failure at (the server's own are not among them)."""


class FailureKind(StrEnum):
    """What went wrong: one kind per fedhive error class, and the failures that are no
    exception (a deadline, a closed round, a dropout, a stale update, a SecAgg verdict)."""

    CLIENT_ERROR = "client_error"
    """The user's code raised or returned something unusable (``detail``: the type)."""
    CONFIG = "config"
    SERIALIZATION = "serialization"
    CODEC = "codec"
    """A compressed update's payload does not decode (or an update cannot be encoded)."""
    VALIDATION = "validation"
    NAME_MISMATCH = "name_mismatch"
    SHAPE_MISMATCH = "shape_mismatch"
    DTYPE_MISMATCH = "dtype_mismatch"
    NON_FINITE = "non_finite"
    SIGNATURE = "signature"
    BUDGET_EXCEEDED = "budget_exceeded"
    SECAGG = "secagg"
    """Secure aggregation refused a client's message."""
    TRANSPORT = "transport"
    PEER_REJECTED = "peer_rejected"
    DEADLINE = "deadline"
    """No result before the task's deadline."""
    ROUND_CLOSED = "round_closed"
    """The cohort reached its quorum and no longer waited for this task."""
    DROPOUT = "dropout"
    """Secure aggregation: the device vanished (simulated) or stopped answering."""
    STALE = "stale"
    """Asynchronous rounds: the update was computed on a too old model version."""
    EXCLUDED = "excluded"
    """Secure aggregation excluded the client (too few neighbours, a bad share)."""
    INCONSISTENT_DEALER = "inconsistent_dealer"
    """Secure aggregation: the client dealt shares that do not match its commitments."""
    UNREADABLE_SHARES = "unreadable_shares"
    """Secure aggregation: the client's neighbours report its shares do not decrypt."""


_KIND_OF_ERROR: dict[type[BaseException], FailureKind] = {
    ClientError: FailureKind.CLIENT_ERROR,
    ConfigError: FailureKind.CONFIG,
    SerializationError: FailureKind.SERIALIZATION,
    CodecError: FailureKind.CODEC,
    ValidationError: FailureKind.VALIDATION,
    NameMismatchError: FailureKind.NAME_MISMATCH,
    ShapeMismatchError: FailureKind.SHAPE_MISMATCH,
    DTypeMismatchError: FailureKind.DTYPE_MISMATCH,
    NonFiniteError: FailureKind.NON_FINITE,
    SignatureError: FailureKind.SIGNATURE,
    PrivacyBudgetError: FailureKind.BUDGET_EXCEEDED,
    SecAggError: FailureKind.SECAGG,
    TransportError: FailureKind.TRANSPORT,
    PeerRejectedError: FailureKind.PEER_REJECTED,
}


def kind_of(exc: BaseException) -> FailureKind:
    """The kind of failure ``exc`` is: that of its nearest class in fedhive's error tree,
    else :attr:`FailureKind.CLIENT_ERROR` (any other exception is the user's code's)."""
    for cls in type(exc).__mro__:
        kind = _KIND_OF_ERROR.get(cls)
        if kind is not None:
            return kind
    return FailureKind.CLIENT_ERROR
