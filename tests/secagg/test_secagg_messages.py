"""Message codecs: decode(encode(m)) == m, and malformed bytes raise SerializationError only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import SerializationError
from fedhive.secagg import codec
from fedhive.secagg.messages import (
    SHARE_BYTES,
    SHARE_CIPHERTEXT_BYTES,
    AdvertiseKeys,
    MaskedInput,
    MaskedInputRequest,
    Message,
    NeighbourKeys,
    PeerKeys,
    RevealedShare,
    RoundSetup,
    RoutedShare,
    ShareKeys,
    SharePacket,
    UnmaskRequest,
    UnmaskResponse,
    decode_message,
)
from fedhive.secagg.params import SecAggParams

T = TypeVar("T")

ids = st.text(min_size=1, max_size=12).filter(str.isprintable)
id_lists = st.lists(ids, unique=True, max_size=5).map(lambda xs: tuple(sorted(xs)))
rounds = st.integers(0, 2**63 - 1)
key = st.binary(min_size=32, max_size=32)
sealed = st.binary(min_size=SHARE_CIPHERTEXT_BYTES, max_size=SHARE_CIPHERTEXT_BYTES)
share = st.binary(min_size=SHARE_BYTES, max_size=SHARE_BYTES)


def _setups() -> st.SearchStrategy[RoundSetup]:
    params = st.builds(
        SecAggParams,
        num_clients=st.integers(3, 6),
        dropout_fraction=st.sampled_from([0.0, 0.01]),
        corruption_fraction=st.sampled_from([0.0, 0.01]),
        security_bits=st.integers(1, 8),
        correctness_bits=st.integers(1, 4),
        ring_bits=st.sampled_from([32, 64]),
        clip_range=st.floats(1e-3, 1e3),
        max_weight=st.integers(1, 1000),
    )
    return params.flatmap(
        lambda p: st.builds(
            RoundSetup,
            round=rounds,
            client_ids=st.lists(ids, min_size=p.num_clients, max_size=p.num_clients, unique=True)
            .map(sorted)
            .map(tuple),
            graph_seed=st.integers(0, 2**64 - 1),
            vector_size=st.integers(1, 2**31 - 1),
            params=st.just(p),
        )
    )


def _with_ids(
    build: Callable[..., T], id_field: str, fields: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[tuple[T, ...]]:
    """Tuples of ``build(**{id_field: name}, **fields)`` for sorted distinct names."""

    def one(name: str) -> st.SearchStrategy[T]:
        return fields.map(lambda kwargs: build(**{id_field: name}, **kwargs))

    return id_lists.flatmap(lambda names: st.tuples(*[one(name) for name in names]))


peers = _with_ids(
    PeerKeys, "client_id", st.fixed_dictionaries({"cipher_public_key": key, "mask_public_key": key})
)
packets = _with_ids(
    SharePacket,
    "recipient",
    st.fixed_dictionaries(
        {"ciphertext": sealed, "self_mask_commitment": key, "mask_key_commitment": key}
    ),
)
routed = _with_ids(RoutedShare, "dealer", st.fixed_dictionaries({"ciphertext": sealed}))
revealed = _with_ids(RevealedShare, "dealer", st.fixed_dictionaries({"share": share}))
vectors = st.sampled_from([np.uint32, np.uint64]).flatmap(
    lambda dtype: st.lists(st.integers(0, np.iinfo(dtype).max), min_size=1, max_size=20).map(
        lambda values: np.asarray(values, dtype=dtype)
    )
)

MESSAGES: st.SearchStrategy[Message] = st.one_of(
    _setups(),
    st.builds(
        AdvertiseKeys,
        round=rounds,
        client_id=ids,
        cipher_public_key=key,
        mask_public_key=key,
        self_mask_commitment=key,
    ),
    st.builds(NeighbourKeys, round=rounds, client_id=ids, peers=peers),
    st.builds(ShareKeys, round=rounds, client_id=st.just("\u2603dealer"), packets=packets),
    st.builds(MaskedInputRequest, round=rounds, client_id=ids, shares=routed),
    st.builds(lambda r, c, v: MaskedInput.of(round=r, client_id=c, vector=v), rounds, ids, vectors),
    st.builds(UnmaskRequest, round=rounds, client_id=ids, dropped=id_lists, survived=id_lists),
    st.builds(
        UnmaskResponse,
        round=rounds,
        client_id=ids,
        self_mask_shares=revealed,
        mask_key_shares=revealed,
    ),
)


@settings(max_examples=150, deadline=None)
@given(MESSAGES)
def test_decode_of_encode_is_identity(message: Message) -> None:
    data = message.to_bytes()
    assert decode_message(data) == message
    assert type(message).from_bytes(data) == message
    assert decode_message(data).to_bytes() == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_serialization_errors(data: bytes) -> None:
    with pytest.raises(SerializationError):
        decode_message(data)


@settings(max_examples=200, deadline=None)
@given(MESSAGES, st.data())
def test_mangled_messages_decode_or_raise_serialization_errors(
    message: Message, data: st.DataObject
) -> None:
    raw = bytearray(message.to_bytes())
    how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip":
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    try:
        decoded = decode_message(bytes(raw))
    except SerializationError:
        return
    assert decoded.to_bytes() == bytes(raw)  # whatever decodes is canonical


def _frame(header: dict[str, object], blobs: list[bytes]) -> bytes:
    return codec.pack(header, blobs)


@pytest.mark.parametrize(
    ("header", "blobs", "match"),
    [
        ({"type": "nope", "round": 1}, [], "unknown"),
        ({"type": "advertise_keys", "round": 1, "client_id": "a"}, [b"x" * 32] * 2, "3 blobs"),
        ({"type": "advertise_keys", "round": -1, "client_id": "a"}, [b"x" * 32] * 3, "round"),
        ({"type": "advertise_keys", "round": True, "client_id": "a"}, [b"x" * 32] * 3, "type"),
        ({"type": "advertise_keys", "round": 1, "client_id": ""}, [b"x" * 32] * 3, "client id"),
        ({"type": "advertise_keys", "round": 1, "client_id": "a"}, [b"x" * 31] * 3, "32 bytes"),
        (
            {"type": "unmask_request", "round": 1, "client_id": "a", "dropped": ["b", "a"],
             "survived": []},
            [],
            "sorted",
        ),
        (
            {"type": "neighbour_keys", "round": 1, "client_id": "a", "peers": ["b"]},
            [b"x" * 32, b"x" * 33],
            "x 32 bytes",
        ),
    ],
)  # fmt: skip
def test_malformed_frames_say_what_is_wrong(
    header: dict[str, object], blobs: list[bytes], match: str
) -> None:
    with pytest.raises(SerializationError, match=match):
        decode_message(_frame(header, blobs))


def test_non_canonical_bytes_and_wrong_types_are_refused() -> None:
    message = UnmaskRequest(round=1, client_id="a", dropped=(), survived=("b",))
    data = message.to_bytes()
    header, _blobs = codec.unpack(data)
    spaced = json.dumps(header, sort_keys=True).encode()  # with spaces: not canonical
    frame = codec.MAGIC + bytes([1]) + len(spaced).to_bytes(4, "big") + spaced + bytes(4)
    with pytest.raises(SerializationError, match="canonical"):
        decode_message(frame)
    with pytest.raises(SerializationError, match="expected a advertise_keys"):
        AdvertiseKeys.from_bytes(data)
    with pytest.raises(SerializationError, match="magic"):
        decode_message(b"JUNK" + data[4:])
    with pytest.raises(SerializationError, match="version"):
        decode_message(data[:4] + b"\x02" + data[5:])


def test_constructors_refuse_what_decoders_refuse() -> None:
    with pytest.raises(SerializationError, match="sorted"):
        UnmaskRequest(round=1, client_id="a", dropped=("c", "b"), survived=())
    with pytest.raises(SerializationError, match="itself"):
        ShareKeys(
            round=1,
            client_id="a",
            packets=(
                SharePacket(
                    recipient="a",
                    ciphertext=bytes(SHARE_CIPHERTEXT_BYTES),
                    self_mask_commitment=bytes(32),
                    mask_key_commitment=bytes(32),
                ),
            ),
        )
    with pytest.raises(SerializationError, match="uint32 or uint64"):
        MaskedInput.of(round=1, client_id="a", vector=np.zeros(3, dtype=np.int64))
    params = SecAggParams(num_clients=3, dropout_fraction=0.0, corruption_fraction=0.0)
    with pytest.raises(SerializationError, match="num_clients"):
        RoundSetup(round=0, client_ids=("a", "b"), graph_seed=0, vector_size=1, params=params)


def test_json_constants_and_oversized_cohorts_are_refused() -> None:
    frame = codec.MAGIC + b"\x01"
    header = b'{"round":NaN,"type":"unmask_request"}'
    with pytest.raises(SerializationError, match="NaN"):
        decode_message(frame + len(header).to_bytes(4, "big") + header + bytes(4))
    params = SecAggParams(num_clients=3, dropout_fraction=0.0, corruption_fraction=0.0)
    setup = RoundSetup(
        round=0, client_ids=("a", "b", "c"), graph_seed=0, vector_size=1, params=params
    )
    table, blobs = codec.unpack(setup.to_bytes())
    table["params"]["num_clients"] = 10**30  # must not make the decoder do 10^30 work
    with pytest.raises(SerializationError, match="num_clients"):
        decode_message(codec.pack(table, blobs))


def test_a_setup_with_invalid_params_is_a_serialization_error() -> None:
    params = SecAggParams(num_clients=3, dropout_fraction=0.0, corruption_fraction=0.0)
    setup = RoundSetup(
        round=0, client_ids=("a", "b", "c"), graph_seed=0, vector_size=1, params=params
    )
    header, blobs = codec.unpack(setup.to_bytes())
    header["params"]["ring_bits"] = 48
    with pytest.raises(SerializationError, match="ring_bits"):
        decode_message(codec.pack(header, blobs))


def _raw(header_bytes: bytes, rest: bytes = b"") -> bytes:
    return codec.MAGIC + b"\x01" + len(header_bytes).to_bytes(4, "big") + header_bytes + rest


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_raw(b"[]", bytes(4)), "header must be a JSON object"),
        (_raw(b"{}"), "truncated before its blob count"),
        (_raw(b"{}", (5).to_bytes(4, "big") + b"xyz"), "claims more blobs than it has bytes"),
        (_raw(b"{}", (1).to_bytes(4, "big") + b"xyz"), "truncated"),
        (_raw(b"{}", (1).to_bytes(4, "big") + (9).to_bytes(4, "big") + b"xyz"), "truncated"),
        (_raw(b"{}", bytes(4) + b"!"), "trailing bytes"),
        (_raw(b'{"round":1e400,"type":"unmask_request"}', bytes(4)), "round"),
    ],
)
def test_broken_frames_say_what_is_wrong(data: bytes, match: str) -> None:
    with pytest.raises(SerializationError, match=match):
        decode_message(data)


def test_only_bytes_are_decoded() -> None:
    message = UnmaskRequest(round=1, client_id="a", dropped=(), survived=("b",))
    assert decode_message(bytearray(message.to_bytes())) == message
    assert decode_message(memoryview(message.to_bytes())) == message
    with pytest.raises(SerializationError, match="expected bytes, got str"):
        decode_message(message.to_bytes().decode("ascii"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "blobs", "match"),
    [
        ({"type": "advertise_keys", "round": "1", "client_id": "a"}, [b"x" * 32] * 3, "type"),
        ({"type": "advertise_keys", "round": 1}, [b"x" * 32] * 3, "lacks 'client_id'"),
        ({"type": "advertise_keys", "round": 1, "client_id": "a\n"}, [b"x" * 32] * 3, "printable"),
        ({"type": "masked_input", "round": 1, "client_id": "a", "ring_bits": 48}, [b"x" * 8],
         "ring_bits must be 32 or 64, got 48"),
        ({"type": "masked_input", "round": 1, "client_id": "a", "ring_bits": 16}, [b"x" * 8],
         r"ring_bits must be an integer in \[32, 64\]"),
        ({"type": "masked_input", "round": 1, "client_id": "a", "ring_bits": 32}, [b""],
         "non-empty vector"),
        ({"type": "masked_input", "round": 1, "client_id": "a", "ring_bits": 64}, [b"x" * 12],
         "not whole ring elements"),
    ],
)  # fmt: skip
def test_malformed_fields_say_what_is_wrong(
    header: dict[str, object], blobs: list[bytes], match: str
) -> None:
    with pytest.raises(SerializationError, match=match):
        decode_message(_frame(header, blobs))


def test_a_setup_with_other_params_keys_is_refused() -> None:
    params = SecAggParams(num_clients=3, dropout_fraction=0.0, corruption_fraction=0.0)
    setup = RoundSetup(
        round=0, client_ids=("a", "b", "c"), graph_seed=0, vector_size=1, params=params
    )
    header, blobs = codec.unpack(setup.to_bytes())
    header["params"]["degree"] = 2  # derived, never sent
    with pytest.raises(SerializationError, match="params must have exactly the keys"):
        decode_message(codec.pack(header, blobs))
    with pytest.raises(SerializationError, match="params must be SecAggParams"):
        RoundSetup(
            round=0,
            client_ids=("a", "b", "c"),
            graph_seed=0,
            vector_size=1,
            params=header["params"],
        )


def test_constructors_refuse_parts_of_the_wrong_type() -> None:
    peer = PeerKeys(client_id="b", cipher_public_key=bytes(32), mask_public_key=bytes(32))
    with pytest.raises(SerializationError, match="peers must be PeerKeys"):
        NeighbourKeys(round=1, client_id="a", peers=(peer, "c"))  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="packets must be SharePackets"):
        ShareKeys(round=1, client_id="a", packets=(peer,))  # type: ignore[arg-type]
    routed = RoutedShare(dealer="b", ciphertext=bytes(SHARE_CIPHERTEXT_BYTES))
    with pytest.raises(SerializationError, match="shares must be RoutedShares"):
        MaskedInputRequest(round=1, client_id="a", shares=(routed, peer))  # type: ignore[arg-type]
    revealed = RevealedShare(dealer="b", share=bytes(SHARE_BYTES))
    for self_mask, mask_key in [((routed,), ()), ((revealed,), (routed,))]:
        with pytest.raises(SerializationError, match="revealed shares must be RevealedShares"):
            UnmaskResponse(
                round=1,
                client_id="a",
                self_mask_shares=self_mask,  # type: ignore[arg-type]
                mask_key_shares=mask_key,  # type: ignore[arg-type]
            )


def test_a_message_class_without_a_type_is_not_registered() -> None:
    class Draft(codec.Message):
        def _header(self) -> dict[str, Any]:
            return {}

        @classmethod
        def _build(cls, header: dict[str, Any], blobs: list[bytes]) -> Draft:
            return cls()

    assert Draft().to_bytes() == codec.pack({"type": ""}, [])
    with pytest.raises(SerializationError, match="unknown secagg message type ''"):
        decode_message(Draft().to_bytes())
    assert Draft.from_bytes(Draft().to_bytes()).to_bytes() == Draft().to_bytes()


def test_id_lists_must_be_lists() -> None:
    with pytest.raises(SerializationError, match="dropped must be a list of client ids"):
        UnmaskRequest(round=1, client_id="a", dropped="b", survived=())  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [">u4", "<u4", ">u8", "<u8"])
def test_a_masked_vector_comes_back_in_native_order(dtype: str) -> None:
    vector = np.arange(5, dtype=dtype) * np.asarray(2**31 - 1, dtype=dtype)
    message = MaskedInput.of(round=1, client_id="a", vector=vector)
    decoded = decode_message(message.to_bytes())
    assert isinstance(decoded, MaskedInput)
    assert decoded.vector.dtype == np.dtype(dtype).newbyteorder("=")
    assert np.array_equal(decoded.vector, vector)
