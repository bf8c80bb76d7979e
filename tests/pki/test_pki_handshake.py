"""A real mutual-TLS handshake over gRPC with provisioned certificates.

The server requires a client certificate chained to the CA; the handler reads the peer's
certificate from the auth context, names the client with ``client_id_of`` and refuses
revoked serials (gRPC's Python server cannot check a CRL during the handshake).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import cast

import grpc
import pytest

from fedhive.pki import (
    CertificateAuthority,
    RevocationList,
    TLSConfig,
    client_id_of,
    load_certificate,
    provision,
    revoke,
)

METHOD = "/fedhive.test.Echo/WhoAmI"
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("handshake") / "pki"
    provision(out, clients=3, server_names=[])  # client-0002 gets revoked
    return out


@pytest.fixture(scope="module")
def server(pki: Path) -> Iterator[int]:
    ca, cert, key = TLSConfig.from_dir(pki / "server").read()
    revoked = RevocationList.from_dir(pki / "server")

    def who_am_i(request: bytes, context: grpc.ServicerContext) -> bytes:
        # grpc-stubs type the values as bytes; at run time each is a list of bytes.
        auth = cast("dict[str, list[bytes]]", context.auth_context())
        pem = auth["x509_pem_cert"][0]
        if revoked.is_revoked(load_certificate(pem).serial_number):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
        return client_id_of(pem).encode() + b":" + request

    handler = grpc.method_handlers_generic_handler(
        "fedhive.test.Echo", {"WhoAmI": grpc.unary_unary_rpc_method_handler(who_am_i)}
    )
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    creds = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    port = srv.add_secure_port("127.0.0.1:0", creds)
    assert port != 0
    srv.start()
    try:
        yield port
    finally:
        srv.stop(grace=0.5).wait(5)


def call(port: int, ca: bytes, cert: bytes, key: bytes, *, name: str | None = None) -> bytes:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    # No target-name override by default: the server's 127.0.0.1 IP SAN must match.
    options: list[tuple[str, str | int]] = [("grpc.use_local_subchannel_pool", 1)]
    if name is not None:
        options.append(("grpc.ssl_target_name_override", name))
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        reply: bytes = stub(b"hello", timeout=TIMEOUT)
        return reply


def test_a_provisioned_client_is_served_and_named(pki: Path, server: int) -> None:
    for client_id in ("client-0000", "client-0001"):
        ca, cert, key = TLSConfig.from_dir(pki / "clients" / client_id).read()
        assert call(server, ca, cert, key) == f"{client_id}:hello".encode()


def test_the_server_is_ready_for_a_provisioned_client(pki: Path, server: int) -> None:
    ca, cert, key = TLSConfig.from_dir(pki / "clients" / "client-0000").read()
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(f"127.0.0.1:{server}", creds) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)


def refused(
    port: int, ca: bytes, cert: bytes, key: bytes, *, name: str | None = None
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(port, ca, cert, key, name=name)
    return info.value


def test_a_client_of_another_ca_is_refused_in_the_handshake(pki: Path, server: int) -> None:
    ca, _, _ = TLSConfig.from_dir(pki / "clients" / "client-0000").read()
    stranger = CertificateAuthority.create().issue_client("client-0000")  # same id, other CA
    error = refused(server, ca, stranger.cert_pem, stranger.key_pem)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_an_expired_client_is_refused_in_the_handshake(pki: Path, server: int) -> None:
    ca_pem, _, _ = TLSConfig.from_dir(pki / "clients" / "client-0000").read()
    authority = CertificateAuthority.load(ca_pem, (pki / "ca" / "ca.key").read_bytes())
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    expired = authority.issue_client("late", not_before=start, valid_days=1)
    error = refused(server, ca_pem, expired.cert_pem, expired.key_pem)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_trusts_another_ca_refuses_the_server(pki: Path, server: int) -> None:
    _, cert, key = TLSConfig.from_dir(pki / "clients" / "client-0000").read()
    other_ca = CertificateAuthority.create().cert_pem
    error = refused(server, other_ca, cert, key)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_the_server_certificate_cannot_act_as_a_client(pki: Path, server: int) -> None:
    # Its extended key usage is serverAuth only; BoringSSL says "unsupported certificate
    # purpose" in grpc's log.
    ca, cert, key = TLSConfig.from_dir(pki / "server").read()
    error = refused(server, ca, cert, key)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_server_name_outside_the_sans_is_refused_by_the_client(pki: Path, server: int) -> None:
    ca, cert, key = TLSConfig.from_dir(pki / "clients" / "client-0000").read()
    assert call(server, ca, cert, key, name="localhost") == b"client-0000:hello"
    error = refused(server, ca, cert, key, name="fl.elsewhere.org")
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_revoked_client_is_refused_on_its_next_call(pki: Path, server: int) -> None:
    # Only this test uses client-0002, so the order of the tests does not matter.
    ca, cert, key = TLSConfig.from_dir(pki / "clients" / "client-0002").read()
    assert call(server, ca, cert, key) == b"client-0002:hello"
    # os.replace gives crl.pem a new inode (the temporary file existed beside the old
    # one), so the list sees the change even within one tick of a coarse mtime clock.
    revoke(pki, "client-0002")
    error = refused(server, ca, cert, key)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (error.details() or "")
    ca0, cert0, key0 = TLSConfig.from_dir(pki / "clients" / "client-0000").read()
    assert call(server, ca0, cert0, key0) == b"client-0000:hello"
