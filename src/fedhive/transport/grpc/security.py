"""Mutual TLS for the gRPC transport: credentials, and who a call comes from.

The TLS handshake proves the peer holds a certificate issued by the federation's CA;
:class:`CertificateIdentity` then reads the client id from that certificate on every
call and refuses a revoked one (gRPC's own TLS cannot check a CRL during the handshake,
so revocation is enforced per call, and takes effect without a restart).
"""

from __future__ import annotations

import logging

import grpc

from fedhive.errors import FedhiveError
from fedhive.pki.identity import client_id_of, load_certificate
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig

log = logging.getLogger("fedhive.server")


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate from the CA."""
    ca, cert, key = tls.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(tls: TLSConfig) -> grpc.ChannelCredentials:
    """Client credentials: trust the CA, present this client's certificate."""
    ca, cert, key = tls.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


class CertificateIdentity:
    """Identifies callers by their verified client certificate; refuses revoked ones."""

    def __init__(self, revocations: RevocationList | None = None) -> None:
        self._revocations = revocations

    def __call__(self, context: grpc.ServicerContext, claimed: str) -> str:
        """The caller's client id (aborts the call with UNAUTHENTICATED if unacceptable)."""
        pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
        if pem is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        try:
            cert = load_certificate(bytes(pem))
            client_id = client_id_of(cert)
        except FedhiveError as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"unusable certificate: {exc}")
            raise  # abort raises; this keeps type checkers informed
        if self._revocations is not None and self._revocations.is_revoked(cert.serial_number):
            log.warning(
                "refused %s from %s: certificate %x revoked",
                client_id,
                context.peer(),
                cert.serial_number,
            )
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
        if claimed and claimed != client_id:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the request names {claimed!r}, the certificate belongs to {client_id!r}",
            )
        return client_id
