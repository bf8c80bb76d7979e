"""The SecAgg+ protocol messages as frozen values with canonical ``to_bytes``/``from_bytes``.

One message per arrow of Bonawitz et al. (CCS 2017, Fig. 4) as run over the SecAgg+ graph
of Bell et al. (CCS 2020, Alg. 2): the server's ``RoundSetup``, ``NeighbourKeys``,
``MaskedInputRequest`` and ``UnmaskRequest``, and the clients' ``AdvertiseKeys``,
``ShareKeys``, ``MaskedInput`` and ``UnmaskResponse``. Constructors check syntax (sizes,
sorted distinct ids) and raise :class:`SerializationError`; the protocol's meaning is
checked by the state machines. Bytes use :mod:`fedhive.secagg.codec`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from fedhive.errors import SerializationError
from fedhive.secagg import codec
from fedhive.secagg.codec import (
    Message,
    check_blob,
    check_id,
    check_ids,
    check_int,
    check_round,
    decode_message,
    get,
    split_blob,
)
from fedhive.secagg.commitments import DIGEST_BYTES
from fedhive.secagg.hazmat import keys
from fedhive.secagg.masking_messages import (
    SHARE_BYTES,
    SHARE_CIPHERTEXT_BYTES,
    MaskedInput,
    MaskedInputRequest,
    RevealedShare,
    RoutedShare,
    UnmaskRequest,
    UnmaskResponse,
)
from fedhive.secagg.params import SecAggParams

KEY_BYTES = keys.KEY_BYTES
MAX_VECTOR_SIZE = (1 << 31) - 1


def _params_header(params: SecAggParams) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in fields(params) if f.init}


@dataclass(frozen=True, kw_only=True)
class RoundSetup(Message):
    """Server to every selected client: the round, the cohort, the graph seed, the params."""

    TYPE: ClassVar[str] = "round_setup"
    round: int
    client_ids: tuple[str, ...]
    graph_seed: int
    vector_size: int
    params: SecAggParams

    def __post_init__(self) -> None:
        check_round(self.round)
        check_ids(self.client_ids, "client_ids")
        if not isinstance(self.params, SecAggParams):
            raise SerializationError("params must be SecAggParams")
        if len(self.client_ids) != self.params.num_clients:
            raise SerializationError("client_ids must hold params.num_clients ids")
        check_int(self.graph_seed, 0, (1 << 64) - 1, "graph_seed")
        check_int(self.vector_size, 1, MAX_VECTOR_SIZE, "vector_size")

    def _header(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "client_ids": list(self.client_ids),
            "graph_seed": self.graph_seed,
            "vector_size": self.vector_size,
            "params": _params_header(self.params),
        }

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> RoundSetup:
        codec.expect_blobs(blobs, 0, cls.TYPE)
        table = get(header, "params", dict)
        names = {f.name for f in fields(SecAggParams) if f.init}
        if set(table) != names:
            raise SerializationError(f"params must have exactly the keys {sorted(names)}")
        return cls(
            round=get(header, "round", int),
            client_ids=tuple(get(header, "client_ids", list)),
            graph_seed=get(header, "graph_seed", int),
            vector_size=get(header, "vector_size", int),
            params=SecAggParams(**table),
        )


@dataclass(frozen=True, kw_only=True)
class AdvertiseKeys(Message):
    """Client to server: its two X25519 public keys and the commitment to its self-mask seed."""

    TYPE: ClassVar[str] = "advertise_keys"
    round: int
    client_id: str
    cipher_public_key: bytes
    mask_public_key: bytes
    self_mask_commitment: bytes

    def __post_init__(self) -> None:
        check_round(self.round)
        check_id(self.client_id)
        check_blob(self.cipher_public_key, KEY_BYTES, "cipher_public_key")
        check_blob(self.mask_public_key, KEY_BYTES, "mask_public_key")
        check_blob(self.self_mask_commitment, DIGEST_BYTES, "self_mask_commitment")

    def _header(self) -> dict[str, Any]:
        return {"round": self.round, "client_id": self.client_id}

    def _blobs(self) -> list[bytes]:
        return [self.cipher_public_key, self.mask_public_key, self.self_mask_commitment]

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> AdvertiseKeys:
        codec.expect_blobs(blobs, 3, cls.TYPE)
        return cls(
            round=get(header, "round", int),
            client_id=get(header, "client_id", str),
            cipher_public_key=blobs[0],
            mask_public_key=blobs[1],
            self_mask_commitment=blobs[2],
        )


@dataclass(frozen=True, kw_only=True)
class PeerKeys:
    """One neighbour's advertised public keys, as the server forwards them."""

    client_id: str
    cipher_public_key: bytes
    mask_public_key: bytes

    def __post_init__(self) -> None:
        check_id(self.client_id, "peer id")
        check_blob(self.cipher_public_key, KEY_BYTES, "cipher_public_key")
        check_blob(self.mask_public_key, KEY_BYTES, "mask_public_key")


@dataclass(frozen=True, kw_only=True)
class NeighbourKeys(Message):
    """Server to client ``client_id``: the keys of its neighbours that advertised (sorted)."""

    TYPE: ClassVar[str] = "neighbour_keys"
    round: int
    client_id: str
    peers: tuple[PeerKeys, ...]

    def __post_init__(self) -> None:
        check_round(self.round)
        check_id(self.client_id)
        if not all(isinstance(p, PeerKeys) for p in self.peers):
            raise SerializationError("peers must be PeerKeys")
        check_ids([p.client_id for p in self.peers], "peer ids")

    def _header(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "client_id": self.client_id,
            "peers": [p.client_id for p in self.peers],
        }

    def _blobs(self) -> list[bytes]:
        return [
            b"".join(p.cipher_public_key for p in self.peers),
            b"".join(p.mask_public_key for p in self.peers),
        ]

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> NeighbourKeys:
        codec.expect_blobs(blobs, 2, cls.TYPE)
        ids = check_ids(get(header, "peers", list), "peer ids")
        cipher = split_blob(blobs[0], len(ids), KEY_BYTES, "cipher keys")
        mask = split_blob(blobs[1], len(ids), KEY_BYTES, "mask keys")
        peers = tuple(
            PeerKeys(client_id=i, cipher_public_key=c, mask_public_key=m)
            for i, c, m in zip(ids, cipher, mask, strict=True)
        )
        return cls(
            round=get(header, "round", int), client_id=get(header, "client_id", str), peers=peers
        )


@dataclass(frozen=True, kw_only=True)
class SharePacket:
    """A dealer's encrypted shares for one neighbour, with a commitment to each share."""

    recipient: str
    ciphertext: bytes
    self_mask_commitment: bytes
    mask_key_commitment: bytes

    def __post_init__(self) -> None:
        check_id(self.recipient, "recipient")
        check_blob(self.ciphertext, SHARE_CIPHERTEXT_BYTES, "share ciphertext")
        check_blob(self.self_mask_commitment, DIGEST_BYTES, "self_mask_commitment")
        check_blob(self.mask_key_commitment, DIGEST_BYTES, "mask_key_commitment")


@dataclass(frozen=True, kw_only=True)
class ShareKeys(Message):
    """Client to server: one :class:`SharePacket` per neighbour that advertised (sorted)."""

    TYPE: ClassVar[str] = "share_keys"
    round: int
    client_id: str
    packets: tuple[SharePacket, ...]

    def __post_init__(self) -> None:
        check_round(self.round)
        check_id(self.client_id)
        if not all(isinstance(p, SharePacket) for p in self.packets):
            raise SerializationError("packets must be SharePackets")
        check_ids([p.recipient for p in self.packets], "recipients")
        if any(p.recipient == self.client_id for p in self.packets):
            raise SerializationError("a client does not deal shares to itself")

    def _header(self) -> dict[str, Any]:
        recipients = [p.recipient for p in self.packets]
        return {"round": self.round, "client_id": self.client_id, "recipients": recipients}

    def _blobs(self) -> list[bytes]:
        return [
            b"".join(p.ciphertext for p in self.packets),
            b"".join(p.self_mask_commitment for p in self.packets),
            b"".join(p.mask_key_commitment for p in self.packets),
        ]

    @classmethod
    def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> ShareKeys:
        codec.expect_blobs(blobs, 3, cls.TYPE)
        ids = check_ids(get(header, "recipients", list), "recipients")
        sealed = split_blob(blobs[0], len(ids), SHARE_CIPHERTEXT_BYTES, "ciphertexts")
        self_mask = split_blob(blobs[1], len(ids), DIGEST_BYTES, "self-mask commitments")
        mask_key = split_blob(blobs[2], len(ids), DIGEST_BYTES, "mask-key commitments")
        packets = tuple(
            SharePacket(recipient=i, ciphertext=c, self_mask_commitment=b, mask_key_commitment=s)
            for i, c, b, s in zip(ids, sealed, self_mask, mask_key, strict=True)
        )
        return cls(
            round=get(header, "round", int),
            client_id=get(header, "client_id", str),
            packets=packets,
        )


__all__ = [
    "KEY_BYTES",
    "SHARE_BYTES",
    "SHARE_CIPHERTEXT_BYTES",
    "AdvertiseKeys",
    "MaskedInput",
    "MaskedInputRequest",
    "Message",
    "NeighbourKeys",
    "PeerKeys",
    "RevealedShare",
    "RoundSetup",
    "RoutedShare",
    "ShareKeys",
    "SharePacket",
    "UnmaskRequest",
    "UnmaskResponse",
    "decode_message",
]
