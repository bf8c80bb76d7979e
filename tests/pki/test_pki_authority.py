"""Certificate profiles: what the CA issues verifies, names the right parties, and is
refused where it should be."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import given, settings
from hypothesis import strategies as st

from fedhive.errors import ConfigError, SerializationError
from fedhive.pki import CertificateAuthority, client_id_of, load_certificate

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


def sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_a_p256_ca_valid_ten_years(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert basic.critical
    assert basic.value.ca
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert ca.key.curve.name == "secp256r1"
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 3649 <= days <= 3650
    cert.verify_directly_issued_by(cert)  # self-signed


def test_server_cert_verifies_and_names_the_server(ca: CertificateAuthority) -> None:
    issued = ca.issue_server(["fl.example.org", "10.1.2.3", "::1"])
    cert = issued.certificate
    cert.verify_directly_issued_by(ca.certificate)
    names = sans(cert)
    assert set(names.get_values_for_type(x509.DNSName)) == {"fl.example.org", "localhost"}
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.1"),
    }
    assert ekus(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The full RFC 5280 profile check (cryptography's path validation, as a TLS client does).
    store = Store([ca.certificate])
    for name in (x509.DNSName("fl.example.org"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        PolicyBuilder().store(store).build_server_verifier(name).verify(cert, [])
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("evil.org")).verify(
            cert, []
        )


def test_server_cert_always_has_localhost(ca: CertificateAuthority) -> None:
    names = sans(ca.issue_server().certificate)
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_client_cert_names_its_client(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("hospital-7")
    cert = issued.certificate
    cert.verify_directly_issued_by(ca.certificate)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attr.value for attr in cn] == ["hospital-7"]
    uris = sans(cert).get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["fedhive://client/hospital-7"]
    assert ekus(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client_id_of(cert) == "hospital-7"
    assert client_id_of(issued.cert_pem) == "hospital-7"
    verified = PolicyBuilder().store(Store([ca.certificate])).build_client_verifier()
    assert verified.verify(cert, []).subjects == [
        x509.UniformResourceIdentifier("fedhive://client/hospital-7")
    ]


def test_serials_are_random_and_distinct(ca: CertificateAuthority) -> None:
    serials = {ca.issue_client("same").certificate.serial_number for _ in range(5)}
    assert len(serials) == 5
    assert all(serial.bit_length() > 64 for serial in serials)


def test_an_expired_client_cert_can_be_made(ca: CertificateAuthority) -> None:
    start = dt.datetime.now(UTC) - dt.timedelta(days=10)
    cert = ca.issue_client("old", not_before=start, valid_days=1).certificate
    assert cert.not_valid_after_utc < dt.datetime.now(UTC)
    cert.verify_directly_issued_by(ca.certificate)  # well signed, just expired


def test_validity_defaults_to_a_year(ca: CertificateAuthority) -> None:
    cert = ca.issue_client("c").certificate
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365


@pytest.mark.parametrize(
    "bad", ["", "-leading-dash", ".hidden", "has space", "a/b", "é", "x" * 64, "ok\n"]
)
def test_a_bad_client_id_is_refused(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(ConfigError, match="client id"):
        ca.issue_client(bad)


@pytest.mark.parametrize("bad", ["bad name", "-x.org", "a..b", "ex\u00e4mple.org", ""])
def test_a_bad_server_name_is_refused(ca: CertificateAuthority, bad: str) -> None:
    with pytest.raises(ConfigError, match="server name"):
        ca.issue_server([bad])


@pytest.mark.parametrize("days", [0, -1])
def test_a_non_positive_validity_is_refused(ca: CertificateAuthority, days: int) -> None:
    with pytest.raises(ConfigError, match="valid_days"):
        ca.issue_client("c", valid_days=days)


_SHARED_CA = CertificateAuthority.create()  # hypothesis does not mix with fixtures


@settings(max_examples=20, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True))
def test_every_valid_id_round_trips_through_a_certificate(client_id: str) -> None:
    assert client_id_of(_SHARED_CA.issue_client(client_id).cert_pem) == client_id


def cert_with(ca: CertificateAuthority, cn: str, uris: list[str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if uris:
        names = [x509.UniformResourceIdentifier(uri) for uri in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def test_client_id_of_prefers_the_uri_and_falls_back_to_the_cn(
    ca: CertificateAuthority,
) -> None:
    assert client_id_of(cert_with(ca, "cn-only", [])) == "cn-only"
    assert client_id_of(cert_with(ca, "cn", ["fedhive://client/uri"])) == "uri"
    assert client_id_of(cert_with(ca, "cn", ["https://example.org/x"])) == "cn"


@pytest.mark.parametrize(
    ("cn", "uris"),
    [
        ("fedhive CA", []),  # a space: not a client id
        ("a", ["fedhive://client/a", "fedhive://client/b"]),  # two identities
        ("a", ["fedhive://client/../etc"]),  # an invalid id in the URI
    ],
)
def test_a_certificate_without_one_valid_id_is_refused(
    ca: CertificateAuthority, cn: str, uris: list[str]
) -> None:
    with pytest.raises(SerializationError, match="certificate"):
        client_id_of(cert_with(ca, cn, uris))


@pytest.mark.parametrize("junk", [b"", b"not a cert", "-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_junk_is_not_a_certificate(junk: bytes | str) -> None:
    with pytest.raises(SerializationError):
        load_certificate(junk)
    with pytest.raises(SerializationError):
        client_id_of(junk)


def test_a_ca_whose_key_does_not_match_is_refused(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create()
    with pytest.raises(SerializationError, match="does not match"):
        CertificateAuthority.load(ca.cert_pem, other.key_pem)
    loaded = CertificateAuthority.load(ca.cert_pem, ca.key_pem)
    loaded.issue_client("x").certificate.verify_directly_issued_by(ca.certificate)
