"""SecAgg+ messages of the masked-input and unmasking stages (re-exported by ``messages``).

Bonawitz et al. (CCS 2017, Fig. 4, rounds MaskedInputCollection and Unmasking) over the
neighbour graph of Bell et al. (CCS 2020, Alg. 2): the server routes each client the share
ciphertexts its surviving neighbours dealt it, collects masked inputs, then asks every
survivor for the shares that remove the masks: self-mask shares of neighbours that sent an
input, mask-key shares of neighbours that dropped before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedhive.errors import SerializationError
from fedhive.secagg import codec
from fedhive.secagg.codec import (
    Message,
    check_blob,
    check_id,
    check_ids,
    check_int,
    check_round,
    get,
    split_blob,
)
from fedhive.secagg.hazmat import aead, shamir
from fedhive.secagg.hazmat.prg import ring_dtype

SHARE_BYTES = shamir.SHARE_BYTES
SHARE_CIPHERTEXT_BYTES = aead.NONCE_BYTES + 2 * SHARE_BYTES + aead.TAG_BYTES


@dataclass(frozen=True, kw_only=True)
class RoutedShare:
    """The ciphertext ``dealer`` addressed to the message's client, as the server routes it."""

    dealer: str
    ciphertext: bytes

    def __post_init__(self) -> None:
        check_id(self.dealer, "dealer")
        check_blob(self.ciphertext, SHARE_CIPHERTEXT_BYTES, "share ciphertext")


@dataclass(frozen=True, kw_only=True)
class MaskedInputRequest(Message):
    """Server to client: the shares its neighbours dealt it, from those that finished
    ShareKeys. The dealers (``survivors``) are exactly the neighbours it must mask with."""

    TYPE: ClassVar[str] = "masked_input_request"
    round: int
    client_id: str
    shares: tuple[RoutedShare, ...]

    def __post_init__(self) -> None:
        check_round(self.round)
        check_id(self.client_id)
        if not all(isinstance(s, RoutedShare) for s in self.shares):
            raise SerializationError("shares must be RoutedShares")
        check_ids(self.survivors, "dealers")

    @property
    def survivors(self) -> tuple[str, ...]:
        """The neighbours that survived ShareKeys (sorted)."""
        return tuple(s.dealer for s in self.shares)

    def _header(self) -> dict[str, Any]:
        return {"round": self.round, "client_id": self.client_id, "dealers": list(self.survivors)}

    def _blobs(self) -> list[bytes]:
        return [b"".join(s.ciphertext for s in self.shares)]

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> MaskedInputRequest:
        codec.expect_blobs(blobs, 1, cls.TYPE)
        ids = check_ids(get(header, "dealers", list), "dealers")
        sealed = split_blob(blobs[0], len(ids), SHARE_CIPHERTEXT_BYTES, "ciphertexts")
        return cls(
            round=get(header, "round", int),
            client_id=get(header, "client_id", str),
            shares=tuple(
                RoutedShare(dealer=d, ciphertext=c) for d, c in zip(ids, sealed, strict=True)
            ),
        )


@dataclass(frozen=True, kw_only=True)
class MaskedInput(Message):
    """Client to server: its masked ring vector y_u, stored as little-endian bytes."""

    TYPE: ClassVar[str] = "masked_input"
    round: int
    client_id: str
    ring_bits: int
    data: bytes

    def __post_init__(self) -> None:
        check_round(self.round)
        check_id(self.client_id)
        if self.ring_bits not in (32, 64) or isinstance(self.ring_bits, bool):
            raise SerializationError(f"ring_bits must be 32 or 64, got {self.ring_bits!r}")
        if not isinstance(self.data, bytes) or not self.data:
            raise SerializationError("a masked input holds a non-empty vector")
        if len(self.data) % (self.ring_bits // 8):
            raise SerializationError("masked input bytes are not whole ring elements")

    @classmethod
    def of(
        cls, *, round: int, client_id: str, vector: npt.NDArray[np.unsignedinteger]
    ) -> MaskedInput:
        """The message carrying the uint32 or uint64 ``vector``."""
        bits = 8 * vector.dtype.itemsize
        if vector.dtype != ring_dtype(bits) if bits in (32, 64) else True:
            raise SerializationError(f"a masked vector is uint32 or uint64, got {vector.dtype}")
        data = vector.astype(vector.dtype.newbyteorder("<"), copy=False).tobytes()
        return cls(round=round, client_id=client_id, ring_bits=bits, data=data)

    @property
    def vector(self) -> npt.NDArray[np.unsignedinteger]:
        """The masked vector as a new native-order array."""
        dtype = ring_dtype(self.ring_bits)
        return np.frombuffer(self.data, dtype=dtype.newbyteorder("<")).astype(dtype)

    def _header(self) -> dict[str, Any]:
        return {"round": self.round, "client_id": self.client_id, "ring_bits": self.ring_bits}

    def _blobs(self) -> list[bytes]:
        return [self.data]

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> MaskedInput:
        codec.expect_blobs(blobs, 1, cls.TYPE)
        return cls(
            round=get(header, "round", int),
            client_id=get(header, "client_id", str),
            ring_bits=check_int(get(header, "ring_bits", int), 32, 64, "ring_bits"),
            data=blobs[0],
        )


@dataclass(frozen=True, kw_only=True)
class UnmaskRequest(Message):
    """Server to survivor: which of its masking neighbours dropped (D) and which sent (S).

    Syntax only here; the client refuses a request where D and S overlap or do not
    partition the neighbours it masked with.
    """

    TYPE: ClassVar[str] = "unmask_request"
    round: int
    client_id: str
    dropped: tuple[str, ...]
    survived: tuple[str, ...]

    def __post_init__(self) -> None:
        check_round(self.round)
        check_id(self.client_id)
        check_ids(self.dropped, "dropped")
        check_ids(self.survived, "survived")

    def _header(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "client_id": self.client_id,
            "dropped": list(self.dropped),
            "survived": list(self.survived),
        }

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> UnmaskRequest:
        codec.expect_blobs(blobs, 0, cls.TYPE)
        return cls(
            round=get(header, "round", int),
            client_id=get(header, "client_id", str),
            dropped=tuple(get(header, "dropped", list)),
            survived=tuple(get(header, "survived", list)),
        )


@dataclass(frozen=True, kw_only=True)
class RevealedShare:
    """A share of ``dealer``'s secret that the message's client held, in plain bytes."""

    dealer: str
    share: bytes

    def __post_init__(self) -> None:
        check_id(self.dealer, "dealer")
        check_blob(self.share, SHARE_BYTES, "share")


@dataclass(frozen=True, kw_only=True)
class UnmaskResponse(Message):
    """Client to server: self-mask shares of S and mask-key shares of D (each sorted),
    and the requested dealers whose shares it could not open (``unreadable``, sorted)."""

    TYPE: ClassVar[str] = "unmask_response"
    round: int
    client_id: str
    self_mask_shares: tuple[RevealedShare, ...]
    mask_key_shares: tuple[RevealedShare, ...]
    unreadable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_round(self.round)
        check_id(self.client_id)
        for group in (self.self_mask_shares, self.mask_key_shares):
            if not all(isinstance(s, RevealedShare) for s in group):
                raise SerializationError("revealed shares must be RevealedShares")
            check_ids([s.dealer for s in group], "dealers")
        check_ids(self.unreadable, "unreadable")

    def _header(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "client_id": self.client_id,
            "self_mask_dealers": [s.dealer for s in self.self_mask_shares],
            "mask_key_dealers": [s.dealer for s in self.mask_key_shares],
            "unreadable_dealers": list(self.unreadable),
        }

    def _blobs(self) -> list[bytes]:
        return [
            b"".join(s.share for s in self.self_mask_shares),
            b"".join(s.share for s in self.mask_key_shares),
        ]

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> UnmaskResponse:
        codec.expect_blobs(blobs, 2, cls.TYPE)
        groups = []
        for key, blob in zip(("self_mask_dealers", "mask_key_dealers"), blobs, strict=True):
            ids = check_ids(get(header, key, list), key)
            pieces = split_blob(blob, len(ids), SHARE_BYTES, key)
            groups.append(
                tuple(RevealedShare(dealer=d, share=s) for d, s in zip(ids, pieces, strict=True))
            )
        return cls(
            round=get(header, "round", int),
            client_id=get(header, "client_id", str),
            self_mask_shares=groups[0],
            mask_key_shares=groups[1],
            unreadable=tuple(get(header, "unreadable_dealers", list)),
        )
