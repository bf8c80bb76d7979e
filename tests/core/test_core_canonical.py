"""The one canonical JSON form and SHA-256 text form that hashes and signatures use."""

from __future__ import annotations

import hashlib
import json

import pytest

from fedhive.core.canonical import canonical_json, is_sha256_hex
from fedhive.errors import SerializationError
from fedhive.privacy.ledger import Ledger
from fedhive.secagg.codec import pack
from fedhive.transport.envelope import RESULT_DOMAIN, ResultClaim, _canonical


def test_equal_values_give_the_same_sorted_compact_ascii_bytes() -> None:
    a = canonical_json({"b": [1, "é"], "a": {"y": 2, "x": 1.5}})
    b = canonical_json({"a": {"x": 1.5, "y": 2}, "b": [1, "é"]})
    assert a == b == b'{"a":{"x":1.5,"y":2},"b":[1,"\\u00e9"]}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"k": b"bytes"}, {1j}])
def test_what_is_not_json_is_a_serialization_error(value: object) -> None:
    with pytest.raises(SerializationError, match="not canonical JSON"):
        canonical_json(value)


def test_the_signed_and_hashed_encodings_are_the_canonical_one() -> None:
    claim = ResultClaim(
        run_id="r",
        round=1,
        task_id="t",
        client_id="c0",
        model_version="0" * 64,
        payload_sha256="1" * 64,
        header_sha256="2" * 64,
    )
    fields = json.loads(_canonical(RESULT_DOMAIN, claim)[len(RESULT_DOMAIN) :])
    assert _canonical(RESULT_DOMAIN, claim) == RESULT_DOMAIN + canonical_json(fields)
    assert Ledger(()).to_bytes() == canonical_json(json.loads(Ledger(()).to_bytes()))
    header = {"type": "x", "round": 1}
    assert canonical_json(header) in pack(header, [])


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (hashlib.sha256(b"x").hexdigest(), True),
        (hashlib.sha256(b"x").hexdigest().upper(), False),
        (hashlib.sha256(b"x").hexdigest() + "\n", False),
        ("0" * 63, False),
        (b"0" * 64, False),
        (None, False),
    ],
)
def test_a_sha256_in_text_is_64_lowercase_hex_characters(value: object, ok: bool) -> None:
    assert is_sha256_hex(value) is ok
