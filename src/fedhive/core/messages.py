"""Tasks the server sends and results clients return, as frozen values.

These are the messages of the data flow, independent of any transport: the in-process
transport passes them as they are, a network transport encodes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from fedhive.core.config import check_int, check_real
from fedhive.core.extensions import TABLES, Extension
from fedhive.core.failures import FailureKind, Stage, kind_of
from fedhive.core.serde import Scalar
from fedhive.core.weights import Weights
from fedhive.errors import ClientError, ConfigError, ValidationError

E = TypeVar("E", bound=Extension)

Metrics = Mapping[str, float]


MAX_METRICS = 256
"""Most metrics one reply may carry (they are aggregated and stored every round)."""
MAX_METRIC_KEY = 128
"""Longest metric name, in characters."""


def check_metrics(metrics: Mapping[str, object], *, what: str = "metrics") -> dict[str, float]:
    """Return ``metrics`` as a dict of finite floats keyed by non-empty strings.

    At most :data:`MAX_METRICS` keys of at most :data:`MAX_METRIC_KEY` characters.

    Raises:
        ClientError: too many keys, a key that is not a short non-empty string, or a
            value that is not a finite real number.
    """
    if len(metrics) > MAX_METRICS:
        raise ClientError(f"{what}: {len(metrics)} keys, at most {MAX_METRICS} are allowed")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METRIC_KEY:
            shown = key[:40] + "..." if isinstance(key, str) and len(key) > 40 else key
            raise ClientError(
                f"{what} keys must be non-empty strings of at most {MAX_METRIC_KEY} "
                f"characters, got {shown!r}"
            )
        if isinstance(value, (bool, str, bytes)):
            raise ClientError(f"{what}[{key!r}] is not a number: {value!r}")
        try:
            number = float(value)  # type: ignore[arg-type]  # also numpy scalars
        except (TypeError, ValueError):
            raise ClientError(f"{what}[{key!r}] is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise ClientError(f"{what}[{key!r}] is not finite: {number}")
        out[key] = number
    return out


@dataclass(frozen=True, kw_only=True)
class PrivacyBudget:
    """A device's own (epsilon, delta) budget, and the noise it adds itself.

    A device with a budget charges what it actually does to an update before releasing
    it, never what the server claims (see :mod:`fedhive.client.privacy`).

    Attributes:
        epsilon_max: the most epsilon the device spends, over everything it releases.
        delta: the delta at which that epsilon is computed.
        min_noise_multiplier: the device's own floor on noise: it adds noise of std at
            least this times the clipping norm it applies, whatever the server asks.
            None: only the noise the server asks for (``ClipAndNoise.noise_std``).
        clipping_norm: the device's own L2 clipping norm (the server's, if smaller,
            applies instead). None: the server's ``ClipAndNoise.clipping_norm``.
    """

    epsilon_max: float
    delta: float
    min_noise_multiplier: float | None = None
    clipping_norm: float | None = None

    def __post_init__(self) -> None:
        check_real("epsilon_max", self.epsilon_max, low=0, low_open=True)
        check_real("delta", self.delta, low=0, high=1, low_open=True, high_open=True)
        if self.min_noise_multiplier is not None:
            check_real("min_noise_multiplier", self.min_noise_multiplier, low=0, low_open=True)
        if self.clipping_norm is not None:
            check_real("clipping_norm", self.clipping_norm, low=0, low_open=True)


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """How one client trains in one round: epochs, batch size, learning rate, budget.

    ``extensions`` are fedhive's typed instructions (:mod:`fedhive.core.extensions`), at
    most one of each type, read with :meth:`extension`; ``extra`` carries only the app's
    own free-form scalars (``[client] extra``).
    """

    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    privacy_budget: PrivacyBudget | None = None
    extensions: tuple[Extension, ...] = ()
    extra: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("local_epochs", self.local_epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_real("learning_rate", self.learning_rate, low=0, low_open=True)
        kinds = [type(e) for e in self.extensions]
        for kind in kinds:
            if kind not in TABLES.values():  # only these travel on the wire
                raise ConfigError(f"extensions: not a client instruction: {kind.__name__}")
            if kinds.count(kind) > 1:
                raise ConfigError(f"extensions: {kind.__name__} given more than once")
        ordered = tuple(sorted(self.extensions, key=lambda e: type(e).__name__))
        object.__setattr__(self, "extensions", ordered)  # one order: equal configs are ==

    def extension(self, kind: type[E]) -> E | None:
        """The instruction of type ``kind`` this config carries; None when it has none."""
        for value in self.extensions:
            if type(value) is kind:
                return value
        return None

    def with_extensions(self, *added: Extension) -> ClientConfig:
        """This config with ``added``, each replacing one of its type."""
        kinds = {type(e) for e in added}
        kept = tuple(e for e in self.extensions if type(e) not in kinds)
        return replace(self, extensions=kept + added)


@dataclass(frozen=True, kw_only=True)
class FitTask:
    """Train the model ``version`` of round ``round`` on client ``client_id``."""

    round: int
    client_id: str
    version: str
    seed: int
    config: ClientConfig


@dataclass(frozen=True, kw_only=True)
class EvaluateTask:
    """Evaluate the model ``version`` on client ``client_id``'s local test split."""

    round: int
    client_id: str
    version: str
    seed: int
    config: ClientConfig


@dataclass(frozen=True, kw_only=True)
class SecAggTask:
    """Answer the next stage of the secure-aggregation round ``round``.

    The stage's request travels beside the task (deployment: the task envelope);
    ``version`` is the request's SHA-256, so a client's signed answer names what it
    answers.
    """

    round: int
    client_id: str
    version: str
    seed: int = 0
    config: ClientConfig = field(default_factory=ClientConfig)


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """What ``Client.fit`` returns: new weights *or* a delta, examples used, metrics.

    ``aux`` answers the auxiliary tensors the strategy sent (``Context.aux``), name for
    name (SCAFFOLD: the change of the client's control variate); None when none were sent.
    """

    num_examples: int
    weights: Weights | None = None
    delta: Weights | None = None
    metrics: Metrics = field(default_factory=dict)
    aux: Weights | None = None

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.delta is None):
            raise ClientError("FitResult needs exactly one of weights= or delta=")
        if isinstance(self.num_examples, bool) or not isinstance(self.num_examples, int):
            raise ClientError(f"num_examples must be an int, got {self.num_examples!r}")
        if self.num_examples < 0:
            raise ClientError(f"num_examples must be >= 0, got {self.num_examples}")


@dataclass(frozen=True, kw_only=True)
class EvaluateResult:
    """What ``Client.evaluate`` returns: loss, examples evaluated, metrics."""

    loss: float
    num_examples: int
    metrics: Metrics = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FitReply:
    """A client's accepted-for-checking answer to a FitTask: its update (a delta).

    Under secure aggregation the server builds one such reply for the whole round: the
    unmasked mean, with ``contributors`` naming the clients whose updates it holds.
    """

    client_id: str
    round: int
    version: str
    update: Weights
    num_examples: int
    metrics: Metrics = field(default_factory=dict)
    contributors: tuple[str, ...] = ()
    payload: bytes | None = field(default=None, repr=False)
    """The update as a :mod:`fedhive.compression` payload, when the task asked for
    :class:`~fedhive.core.extensions.Compression`: ``update`` is then empty until the
    server decodes the payload with the published model's layout."""
    upload_bytes: int | None = field(default=None, compare=False)
    """The bytes the reply's payload took on the uplink, as the transport that carried
    it counted them (gRPC: the upload stream's data chunks; the process backend: the
    payload blob). None: it crossed no wire (the local backend). A measurement, not
    content: two replies that differ only in it are equal."""

    def __post_init__(self) -> None:
        if self.payload is not None and len(self.update):
            raise ValidationError("a compressed reply carries its update only as the payload")

    @property
    def clients(self) -> int:
        """How many clients' updates this reply holds (several for a secure aggregate)."""
        return len(self.contributors) or 1


@dataclass(frozen=True, kw_only=True)
class SecAggReply:
    """A client's answer under secure aggregation: no update, one protocol message.

    The answer to a fit task is the client's first SecAgg message (its advertised keys);
    the update itself never leaves the device unmasked. Later stages are exchanged as
    ``(client_id, message bytes)`` pairs.
    """

    client_id: str
    round: int
    version: str
    num_examples: int
    message: bytes = field(repr=False)
    metrics: Metrics = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SecAggAnswer:
    """A client's answer to a :class:`SecAggTask`: its message of that stage."""

    client_id: str
    round: int
    message: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class EvaluateReply:
    """A client's answer to an EvaluateTask."""

    client_id: str
    round: int
    loss: float
    num_examples: int
    metrics: Metrics = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A task that produced no usable reply: which client, at which stage, what kind.

    ``detail`` keeps the exception's type name where the kind alone does not say it (a
    user's ``ValueError`` is a :attr:`~FailureKind.CLIENT_ERROR` with detail
    ``"ValueError"``); "" otherwise.
    """

    client_id: str
    round: int
    stage: Stage
    kind: FailureKind
    message: str
    detail: str = ""

    @classmethod
    def of(cls, client_id: str, round: int, stage: Stage, exc: BaseException) -> Failure:
        """The failure ``exc`` caused at ``stage`` of ``client_id``'s task in ``round``."""
        kind = kind_of(exc)
        return cls(
            client_id=client_id,
            round=round,
            stage=stage,
            kind=kind,
            message=str(exc),
            detail=type(exc).__name__ if kind is FailureKind.CLIENT_ERROR else "",
        )

    @property
    def key(self) -> str:
        """``stage:kind``, the key a round record counts this failure under."""
        return f"{self.stage}:{self.kind}"
