"""A mutual-TLS gRPC server on 127.0.0.1 (a free port) and client links to it, from a
provisioned folder (``fedhive.pki.provision``): the server's ``server/`` folder, each
client's ``clients/<id>/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.security import (
    CertificateIdentity,
    ClientSignatures,
    Signatures,
    channel_credentials,
    server_credentials,
)
from fedhive.transport.grpc.server import GrpcServerTransport

L = TypeVar("L", bound=GrpcLink)


def mtls_server(folder: Path, round_timeout: float = 20, **options: Any) -> GrpcServerTransport:
    """A server with the certificates, key and revocation list of ``folder``, serving now
    (``options``: more :class:`GrpcServerTransport` arguments)."""
    tls = TLSConfig.from_dir(folder)
    return GrpcServerTransport(
        address="127.0.0.1:0",
        credentials=server_credentials(tls),
        identify=CertificateIdentity(RevocationList.from_dir(folder)),
        signatures=Signatures(tls),
        round_timeout=round_timeout,
        **options,
    )


def mtls_link(
    server: GrpcServerTransport, folder: Path, client_id: str, kind: type[L] = GrpcLink
) -> L:
    """A ``kind`` link to ``server`` with the client certificate of ``folder``."""
    tls = TLSConfig.from_dir(folder)
    return kind(
        f"127.0.0.1:{server.port}",
        client_id=client_id,
        credentials=channel_credentials(tls),
        server_name="localhost",
        signatures=ClientSignatures(tls),
        timeout=5,
    )
