"""A model version: weights with their canonical bytes and digest, made once.

The round loop builds one :class:`ModelVersion` per model it publishes or commits and
hands it on (transport, checkpoint, the round's record), so a round serialises and
hashes its model once rather than once per consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhive.core.serde import sha256_hex, weights_to_bytes
from fedhive.core.weights import Weights


@dataclass(frozen=True, kw_only=True, eq=False)
class ModelVersion:
    """``weights``, their canonical bytes ``data`` and its hex SHA-256 ``digest``.

    Build it with :meth:`of`, which derives ``data`` and ``digest`` from ``weights``,
    so the three always agree.
    """

    weights: Weights
    data: bytes
    digest: str

    @classmethod
    def of(cls, weights: Weights) -> ModelVersion:
        """Serialise and hash ``weights`` (the only place a version's bytes are made)."""
        data = weights_to_bytes(weights)
        return cls(weights=weights, data=data, digest=sha256_hex(data))

    def derived(self, weights: Weights) -> ModelVersion:
        """This version when ``weights`` are these very weights (no copy, no hash), else
        the version of ``weights`` (a strategy may broadcast more than the model)."""
        return self if weights is self.weights else ModelVersion.of(weights)
