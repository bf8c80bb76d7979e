"""The one exception tree of fedhive.

Every rejection fedhive makes is an instance of :class:`FedhiveError`. Subclasses also
inherit the builtin exception that fits, so ``except ValueError`` keeps working::

    FedhiveError
    ├── ConfigError(ValueError)            a configuration value is not allowed
    │   └── StateError                      a strategy state does not fit its algorithm
    ├── MissingDependencyError(ImportError) an optional extra is not installed
    ├── SerializationError(ValueError)     bytes that do not decode to what they claim
    │   └── CodecError                      a compressed update's payload is refused
    ├── ValidationError(ValueError)        a value does not match its reference
    │   ├── NameMismatchError               tensor names differ from the model's
    │   ├── ShapeMismatchError              a tensor's shape differs
    │   ├── DTypeMismatchError              a tensor's dtype differs
    │   ├── NonFiniteError                  NaN or infinity in a tensor
    │   └── SignatureError                  a signature or its certificate does not verify
    ├── ClientError(RuntimeError)          a client raised or returned something unusable
    ├── AggregationError(ArithmeticError)  aggregation cannot produce a model
    │   └── AggregateCheckError             an unmasked (SecAgg) sum fails a named check
    ├── NotEnoughClientsError(RuntimeError) fewer clients than a strategy requires
    ├── TransportError(ConnectionError)    a transport could not deliver a message
    │   └── PeerRejectedError               the peer refused this client for good (revoked)
    ├── StoreError(RuntimeError)           the server's durable state cannot be read or written
    ├── PrivacyBudgetError(RuntimeError)   a task or run would exceed a privacy budget
    └── SecAggError(RuntimeError)          secure aggregation refused a message or aborted

Errors carry context where it is known: ``client_id``, ``round`` and ``stage`` (the
pipeline stage that refused), shown in ``str(err)``.
"""

from __future__ import annotations

__all__ = [
    "AggregateCheckError",
    "AggregationError",
    "ClientError",
    "CodecError",
    "ConfigError",
    "DTypeMismatchError",
    "FedhiveError",
    "MissingDependencyError",
    "NameMismatchError",
    "NonFiniteError",
    "NotEnoughClientsError",
    "PeerRejectedError",
    "PrivacyBudgetError",
    "SecAggError",
    "SerializationError",
    "ShapeMismatchError",
    "SignatureError",
    "StateError",
    "StoreError",
    "TransportError",
    "ValidationError",
]


class FedhiveError(Exception):
    """Root of every error fedhive raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        client_id: str | None = None,
        round: int | None = None,
        stage: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.client_id = client_id
        self.round = round
        self.stage = stage

    def __str__(self) -> str:
        context = [
            f"{key}={value}"
            for key, value in (
                ("client", self.client_id),
                ("round", self.round),
                ("stage", self.stage),
            )
            if value is not None
        ]
        return f"{self.message} [{', '.join(context)}]" if context else self.message


class ConfigError(FedhiveError, ValueError):
    """A configuration value is not allowed; the message names the key path."""


class StateError(ConfigError):
    """A strategy state does not fit the algorithm that reads it: another component's
    state, an unknown or newer state version, or arrays of another model's size (a
    resumed run whose model or algorithm changed). Never silently reset."""


class MissingDependencyError(FedhiveError, ImportError):
    """An optional extra is needed; the message says which one to install."""


class SerializationError(FedhiveError, ValueError):
    """Bytes that do not decode to the structure they claim to hold."""


class CodecError(SerializationError):
    """A compressed update (:mod:`fedhive.compression`) that cannot be decoded: an
    unknown codec or format version, corrupted or truncated bytes, a header made for
    another model layout, out-of-range indices, non-finite values, or a zstd body that
    would decompress beyond what the layout allows."""


class ValidationError(FedhiveError, ValueError):
    """A value does not match what was expected (its reference model or bounds)."""


class NameMismatchError(ValidationError):
    """Tensor names differ from the reference model's."""


class ShapeMismatchError(ValidationError):
    """A tensor's shape differs from the reference model's."""


class DTypeMismatchError(ValidationError):
    """A tensor's dtype differs from the reference model's."""


class NonFiniteError(ValidationError):
    """A tensor holds NaN or infinity."""


class SignatureError(ValidationError):
    """A signature, or the certificate behind it, does not verify.

    Raised for a bad or foreign signature, a certificate not issued by the trusted CA,
    outside its validity period, or naming another client than the claim.
    """


class ClientError(FedhiveError, RuntimeError):
    """A client raised, or returned a result that cannot be used."""


class AggregationError(FedhiveError, ArithmeticError):
    """Aggregation cannot produce a model (no results, zero weight, overflow)."""


class AggregateCheckError(AggregationError):
    """An unmasked secure-aggregation sum fails a range check; ``check`` names it
    (:class:`fedhive.server.secure.AggregateCheck`), e.g. ``"mean_range"``."""

    def __init__(
        self,
        message: str,
        *,
        check: str = "",
        client_id: str | None = None,
        round: int | None = None,
        stage: str | None = None,
    ) -> None:
        super().__init__(message, client_id=client_id, round=round, stage=stage)
        self.check = check


class NotEnoughClientsError(FedhiveError, RuntimeError):
    """Fewer clients are available or succeeded than the strategy requires."""


class TransportError(FedhiveError, ConnectionError):
    """A transport could not deliver a message (a worker died, a connection closed)."""


class PeerRejectedError(TransportError):
    """The peer refused this client, and asking again will not change that: its
    certificate is revoked or names someone else, or it speaks another schema version.
    A client stops on it rather than retrying."""


class StoreError(FedhiveError, RuntimeError):
    """The server's durable state store failed: I/O, locking, a broken constraint, or
    data that is missing or in a state that does not allow the operation."""


class PrivacyBudgetError(FedhiveError, RuntimeError):
    """A task (on a device) or a round (on the server) would exceed a privacy budget:
    a device's own (epsilon_max, delta), or a run's ``target_epsilon``."""


class SecAggError(FedhiveError, RuntimeError):
    """Secure aggregation refused a protocol message (unsigned, inconsistent, out of
    stage) or aborted a round (fewer survivors than the threshold); nothing is unmasked."""
