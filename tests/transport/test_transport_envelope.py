"""Signed results and models are accepted only when every link verifies: tampering,
foreign keys and CAs, expired certificates and wrong ids are all refused with a message
naming why. (Replays are the coordinator's: see test_transport_grpc_coordinator.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Union

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import SignatureError, ValidationError
from fedhive.transport.envelope import (
    MODEL_DOMAIN,
    RESULT_DOMAIN,
    ModelClaim,
    ResultClaim,
    sign_model,
    sign_result,
    verify_model,
    verify_result,
)

PrivateKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]  # noqa: UP007
NOW = datetime.now(timezone.utc)  # verify_* default to the real clock, so build around it
DAY = timedelta(days=1)
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Party:
    key: Any  # the private key (ECDSA P-256 or Ed25519)
    cert: x509.Certificate


def make_ca(
    common_name: str = "fedhive test CA", *, not_after: datetime = NOW + 365 * DAY
) -> Party:
    key = p256()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Party(key, cert)


def issue(
    ca: Party,
    key: PrivateKey,
    *,
    common_name: str | None = None,
    uris: Sequence[str] = (),
    dns: Sequence[str] = (),
    usages: Sequence[x509.ObjectIdentifier] = (CLIENT_AUTH,),
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 30 * DAY,
) -> Party:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]) if common_name is None else name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    )
    general = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return Party(key, builder.sign(ca.key, hashes.SHA256()))


def client(ca: Party, client_id: str, key: PrivateKey | None = None, **kw: Any) -> Party:
    uri = f"fedhive://client/{client_id}"
    return issue(ca, key or p256(), common_name=client_id, uris=[uri], **kw)


CA = make_ca()
ALICE = client(CA, "alice")
BOB = client(CA, "bob")
SERVER = issue(CA, p256(), common_name="fedhive server", dns=["localhost"], usages=[SERVER_AUTH])
MODEL_BYTES = b"safetensors bytes of the global model"
MODEL_VERSION = hashlib.sha256(MODEL_BYTES).hexdigest()


def result_claim(**changes: Any) -> ResultClaim:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "round": 3,
        "task_id": "task-3-alice",
        "client_id": "alice",
        "model_version": MODEL_VERSION,
        "payload_sha256": hashlib.sha256(b"alice's update").hexdigest(),
        "header_sha256": hashlib.sha256(b"alice's header").hexdigest(),
    }
    return ResultClaim(**{**fields, **changes})


def model_claim(**changes: Any) -> ModelClaim:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "round": 3,
        "model_version": MODEL_VERSION,
        "size": len(MODEL_BYTES),
        "task_sha256": hashlib.sha256(b"alice's task").hexdigest(),
    }
    return ModelClaim(**{**fields, **changes})


def check_result(
    claim: ResultClaim,
    signature: bytes,
    party: Party = ALICE,
    *,
    ca: Party = CA,
    expected: str = "alice",
    now: datetime | None = None,
) -> None:
    verify_result(
        claim, signature, party.cert, ca_certificate=ca.cert, expected_client_id=expected, now=now
    )


# --- signed results -----------------------------------------------------------------


def test_a_signed_result_verifies() -> None:
    claim = result_claim()
    check_result(claim, sign_result(claim, ALICE.key))


def test_an_ed25519_client_key_signs_and_verifies() -> None:
    carol = client(CA, "carol", ed25519.Ed25519PrivateKey.generate())
    claim = result_claim(client_id="carol")
    check_result(claim, sign_result(claim, carol.key), carol, expected="carol")


def test_canonical_bytes_are_the_documented_encoding() -> None:
    claim = result_claim(
        payload_sha256="0" * 64, model_version="f" * 64, task_id='t"1', header_sha256="e" * 64
    )
    assert claim.canonical_bytes() == (
        b'fedhive/result/v2\n{"client_id":"alice","header_sha256":"' + b"e" * 64 + b'",'
        b'"model_version":"' + b"f" * 64 + b'","payload_sha256":"' + b"0" * 64 + b'",'
        b'"round":3,"run_id":"run-1","task_id":"t\\"1"}'
    )
    model = model_claim(model_version="a" * 64, size=7, task_sha256="b" * 64)
    assert model.canonical_bytes() == (
        b'fedhive/model/v2\n{"model_version":"' + b"a" * 64 + b'","round":3,"run_id":"run-1",'
        b'"size":7,"task_sha256":"' + b"b" * 64 + b'"}'
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"payload_sha256": hashlib.sha256(b"another update").hexdigest()},
        {"round": 4},
        {"task_id": "task-3-bob"},
        {"model_version": hashlib.sha256(b"an older model").hexdigest()},
        {"run_id": "run-2"},
        {"header_sha256": hashlib.sha256(b"another header").hexdigest()},
    ],
)
def test_a_tampered_claim_does_not_verify(changes: dict[str, Any]) -> None:
    signature = sign_result(result_claim(), ALICE.key)
    with pytest.raises(SignatureError, match="signature does not verify") as info:
        check_result(result_claim(**changes), signature)
    assert info.value.client_id == "alice"
    assert info.value.stage == "verify_result"


def test_a_signature_by_another_clients_key_does_not_verify() -> None:
    claim = result_claim()
    with pytest.raises(SignatureError, match="signature does not verify"):
        check_result(claim, sign_result(claim, BOB.key))


@pytest.mark.parametrize("garbage", [b"", b"\x30\x00", b"not a signature" * 5])
def test_garbage_signatures_do_not_verify(garbage: bytes) -> None:
    with pytest.raises(SignatureError, match="signature does not verify"):
        check_result(result_claim(), garbage)


def test_a_certificate_for_another_client_is_refused() -> None:
    claim = result_claim()  # alice's claim, presented over bob's authenticated channel
    with pytest.raises(
        SignatureError, match="certificate is for client 'alice', expected client 'bob'"
    ):
        check_result(claim, sign_result(claim, ALICE.key), expected="bob")
    bob_claim = result_claim(client_id="bob")  # bob's claim signed by bob, expected alice
    with pytest.raises(SignatureError, match="certificate is for client 'bob'"):
        check_result(bob_claim, sign_result(bob_claim, BOB.key), BOB)


def test_a_claim_naming_another_client_than_the_certificate_is_refused() -> None:
    claim = result_claim(client_id="bob")  # alice signs a claim in bob's name
    with pytest.raises(
        SignatureError, match="claim names client 'bob', certificate is for 'alice'"
    ):
        check_result(claim, sign_result(claim, ALICE.key))


def test_a_certificate_from_another_ca_is_refused() -> None:
    claim = result_claim()
    rogue = client(make_ca("rogue CA"), "alice")
    with pytest.raises(SignatureError, match=r"not issued by this CA \(issuer CN=rogue CA\)"):
        check_result(claim, sign_result(claim, rogue.key), rogue)
    twin = client(make_ca("fedhive test CA"), "alice")  # same CA name, different CA key
    with pytest.raises(SignatureError, match="not issued by this CA: its signature does not"):
        check_result(claim, sign_result(claim, twin.key), twin)


def test_an_expired_certificate_is_refused() -> None:
    old = client(CA, "alice", not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    claim = result_claim()
    with pytest.raises(SignatureError, match="certificate has expired: valid until"):
        check_result(claim, sign_result(claim, old.key), old)


def test_a_certificate_not_yet_valid_is_refused() -> None:
    early = client(CA, "alice", not_before=NOW + DAY, not_after=NOW + 30 * DAY)
    claim = result_claim()
    with pytest.raises(SignatureError, match="certificate is not yet valid"):
        check_result(claim, sign_result(claim, early.key), early)


def test_validity_is_checked_at_the_injected_time() -> None:
    claim = result_claim()
    signature = sign_result(claim, ALICE.key)
    check_result(claim, signature, now=NOW + 29 * DAY)
    with pytest.raises(SignatureError, match=r"^certificate has expired"):
        check_result(claim, signature, now=NOW + 31 * DAY)
    with pytest.raises(ValidationError, match="timezone-aware") as info:
        check_result(claim, signature, now=datetime(2030, 1, 1))
    assert not isinstance(info.value, SignatureError)


def test_an_expired_ca_is_refused() -> None:
    stale = make_ca(not_after=NOW - DAY)
    alice = client(stale, "alice", not_before=NOW - 5 * DAY)
    claim = result_claim()
    with pytest.raises(SignatureError, match="CA certificate has expired"):
        check_result(claim, sign_result(claim, alice.key), alice, ca=stale)


def test_ca_and_leaf_roles_cannot_be_swapped() -> None:
    claim = result_claim(client_id="fedhive test CA")
    with pytest.raises(SignatureError, match="certificate is a CA certificate"):
        check_result(claim, sign_result(claim, CA.key), CA, expected="fedhive test CA")
    with pytest.raises(SignatureError, match="ca_certificate is not a CA certificate"):
        check_result(result_claim(), sign_result(result_claim(), ALICE.key), ca=ALICE)


def test_a_server_only_certificate_cannot_sign_a_result() -> None:
    claim = result_claim(client_id="fedhive server")
    with pytest.raises(SignatureError, match="does not allow client authentication"):
        check_result(claim, sign_result(claim, SERVER.key), SERVER, expected="fedhive server")


def test_the_common_name_is_the_id_when_there_is_no_client_uri() -> None:
    cn_only = issue(CA, p256(), common_name="alice")
    claim = result_claim()
    check_result(claim, sign_result(claim, cn_only.key), cn_only)
    anonymous = issue(CA, p256(), dns=["example.org"])
    with pytest.raises(SignatureError, match="names no client id"):
        check_result(claim, sign_result(claim, anonymous.key), anonymous)


@pytest.mark.parametrize("odd", ["../alice", "-alice", "a" * 64])
def test_a_certificate_naming_a_malformed_client_id_is_refused(odd: str) -> None:
    # The id is read as the TLS identity check reads it (pki.client_id_of): an id that
    # provisioning never issues (a path, a flag, too long) names no client.
    cert = client(CA, odd)
    claim = result_claim(client_id=odd)
    with pytest.raises(
        SignatureError, match=r"names no client id \(certificate: client id .*: must be"
    ):
        check_result(claim, sign_result(claim, cert.key), cert, expected=odd)


def test_only_p256_and_ed25519_keys_sign() -> None:
    with pytest.raises(ValidationError, match="cannot sign with secp384r1"):
        sign_result(result_claim(), ec.generate_private_key(ec.SECP384R1()))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"payload_sha256": "A" * 64}, "payload_sha256"),
        ({"model_version": "ab" * 31}, "model_version"),
        ({"round": -1}, "round"),
        ({"round": True}, "round"),
        ({"task_id": ""}, "task_id"),
        ({"client_id": ""}, "client_id"),
        ({"run_id": 7}, "run_id"),
    ],
)
def test_malformed_claims_are_refused_at_construction(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=f"^{field} must be"):
        result_claim(**changes)


# --- signed models --------------------------------------------------------------------


def check_model(claim: ModelClaim, signature: bytes, party: Party = SERVER, **kw: Any) -> None:
    kw.setdefault("payload", MODEL_BYTES)
    verify_model(claim, signature, party.cert, ca_certificate=CA.cert, **kw)


def test_a_signed_model_verifies() -> None:
    claim = model_claim()
    check_model(claim, sign_model(claim, SERVER.key))


def test_a_model_whose_bytes_differ_from_the_signed_version_is_refused() -> None:
    claim = model_claim()
    signature = sign_model(claim, SERVER.key)
    swapped = bytes(reversed(MODEL_BYTES))  # same size, different hash
    with pytest.raises(
        SignatureError, match=r"payload hash [0-9a-f]{64} does not match the signed version"
    ):
        check_model(claim, signature, payload=swapped)
    with pytest.raises(SignatureError, match="the signed size is"):
        check_model(claim, signature, payload=MODEL_BYTES + b"\x00")


@pytest.mark.parametrize(
    "changes", [{"round": 4}, {"task_sha256": hashlib.sha256(b"another task").hexdigest()}]
)
def test_a_tampered_model_claim_does_not_verify(changes: dict[str, Any]) -> None:
    signature = sign_model(model_claim(), SERVER.key)
    with pytest.raises(SignatureError, match="signature does not verify"):
        check_model(model_claim(**changes), signature)


def test_a_client_certificate_cannot_sign_a_model() -> None:
    claim = model_claim()
    with pytest.raises(SignatureError, match="does not allow server authentication"):
        check_model(claim, sign_model(claim, ALICE.key), ALICE)
    both = client(CA, "mallory", usages=[CLIENT_AUTH, SERVER_AUTH])
    with pytest.raises(SignatureError, match="a client certificate cannot sign a model"):
        check_model(claim, sign_model(claim, both.key), both)


# --- properties -----------------------------------------------------------------------

HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
IDS = st.text(min_size=1, max_size=24)
SAFE_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,23}", fullmatch=True)  # issuable ids
FIELDS = {
    "run_id": IDS,
    "round": st.integers(0, 2**40),
    "task_id": IDS,
    "client_id": IDS,
    "model_version": HEX64,
    "payload_sha256": HEX64,
    "header_sha256": HEX64,
}
CLAIMS = st.builds(ResultClaim, **FIELDS)


@given(a=CLAIMS, changes=st.fixed_dictionaries({}, optional=FIELDS), other=CLAIMS)
def test_canonical_bytes_are_injective(
    a: ResultClaim, changes: dict[str, Any], other: ResultClaim
) -> None:
    for b in (replace(a, **changes), other):
        assert (a.canonical_bytes() == b.canonical_bytes()) == (a == b)


@given(claim=CLAIMS)
def test_canonical_bytes_decode_back_to_the_claim(claim: ResultClaim) -> None:
    data = claim.canonical_bytes()
    assert data.startswith(RESULT_DOMAIN)
    assert data.isascii()
    assert ResultClaim(**json.loads(data[len(RESULT_DOMAIN) :])) == claim


@given(
    run_id=IDS,
    round_=st.integers(0, 2**40),
    version=HEX64,
    size=st.integers(0, 2**40),
    task=HEX64,
)
def test_model_bytes_decode_back_and_never_equal_result_bytes(
    run_id: str, round_: int, version: str, size: int, task: str
) -> None:
    claim = ModelClaim(
        run_id=run_id, round=round_, model_version=version, size=size, task_sha256=task
    )
    data = claim.canonical_bytes()
    assert ModelClaim(**json.loads(data[len(MODEL_DOMAIN) :])) == claim
    assert not data.startswith(RESULT_DOMAIN)


@settings(max_examples=40, deadline=None)
@given(claim=st.builds(ResultClaim, **{**FIELDS, "client_id": SAFE_IDS}), ed=st.booleans())
def test_sign_then_verify_round_trips_for_any_claim(claim: ResultClaim, ed: bool) -> None:
    key = ed25519.Ed25519PrivateKey.generate() if ed else p256()
    holder = client(CA, claim.client_id, key)
    signature = sign_result(claim, key)
    check_result(claim, signature, holder, expected=claim.client_id)
    with pytest.raises(SignatureError):
        check_result(
            replace(claim, round=claim.round + 1), signature, holder, expected=claim.client_id
        )
