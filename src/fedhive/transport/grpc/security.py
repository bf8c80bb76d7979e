"""Mutual TLS for the gRPC transport: credentials, and who a call comes from.

The TLS handshake proves the peer holds a certificate issued by the federation's CA;
:class:`CertificateIdentity` then reads the client id from that certificate on every
call and refuses a revoked one (gRPC's own TLS cannot check a CRL during the handshake,
so revocation is enforced per call, and takes effect without a restart).
"""

from __future__ import annotations

import logging

import grpc

from fedhive.errors import FedhiveError, SignatureError
from fedhive.pki.authority import load_private_key
from fedhive.pki.identity import client_id_of, load_certificate
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.transport.codec import TaskEnvelope, check_digest
from fedhive.transport.digests import header_sha256, task_sha256
from fedhive.transport.envelope import (
    ModelClaim,
    ResultClaim,
    sign_model,
    sign_result,
    verify_model,
    verify_result,
)
from fedhive.transport.proto import pb

log = logging.getLogger("fedhive.server")


ServerCredentials = grpc.ServerCredentials
"""What :func:`server_credentials` returns (named here, so callers need not import grpc)."""


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
        try:
            revoked = self._revocations is not None and self._revocations.is_revoked(
                cert.serial_number
            )
        except FedhiveError as exc:  # fail closed: no readable CRL, no service
            log.error("revocation list unusable: %s", exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, "revocation list unavailable")
            raise
        if revoked:
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


class Signatures:
    """The server's side of signed messages: it signs models, verifies results.

    Args:
        tls: the server's provisioned TLS material (its key signs; the CA verifies).
    """

    def __init__(self, tls: TLSConfig) -> None:
        ca, cert, key = tls.read()
        self.ca = load_certificate(ca)
        self.certificate_pem = cert
        self._key = load_private_key(key)

    def sign_task(self, envelope: TaskEnvelope) -> bytes:
        """The server's signature over the model ``envelope`` names and the task itself
        (its model's bytes being ``envelope.model_size`` long)."""
        claim = ModelClaim(
            run_id=envelope.run_id,
            round=envelope.task.round,
            model_version=envelope.task.version,
            size=envelope.model_size,
            task_sha256=task_sha256(envelope),
        )
        return sign_model(claim, self._key)

    def verify_upload(
        self,
        context: grpc.ServicerContext,
        envelope: TaskEnvelope,
        *,
        run_id: str,
        header: pb.ResultHeader,
    ) -> None:
        """Check the caller signed (run, round, task, model version, payload hash) of
        the task ``envelope`` it answers, and the rest of ``header``.

        Raises:
            SignatureError: the signature or the certificate does not verify.
            ValidationError: the header's payload hash is not a SHA-256.
        """
        claim = ResultClaim(
            run_id=run_id,
            round=envelope.task.round,
            task_id=envelope.task_id,
            client_id=envelope.task.client_id,
            model_version=envelope.task.version,
            payload_sha256=check_digest(header.payload_sha256, "payload_sha256"),
            header_sha256=header_sha256(header),
        )
        self.verify_result(context, claim, header.signature)

    def verify_result(
        self, context: grpc.ServicerContext, claim: ResultClaim, signature: bytes
    ) -> None:
        """Check the caller's signature over ``claim`` with its TLS-verified certificate.

        Raises:
            SignatureError: the signature or the certificate does not verify.
        """
        pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
        if pem is None:
            raise SignatureError("no client certificate to verify the signature with")
        verify_result(
            claim,
            signature,
            load_certificate(bytes(pem)),
            ca_certificate=self.ca,
            expected_client_id=claim.client_id,
        )


class ClientSignatures:
    """A client's side: it signs results, verifies the models it is sent."""

    def __init__(self, tls: TLSConfig) -> None:
        ca, _cert, key = tls.read()
        self._ca = load_certificate(ca)
        self._key = load_private_key(key)

    def sign_result(self, claim: ResultClaim) -> bytes:
        """This client's signature over a result claim."""
        return sign_result(claim, self._key)

    def verify_model(
        self, claim: ModelClaim, signature: bytes, payload: bytes, server_certificate: bytes
    ) -> None:
        """Check the server's signature and the payload before training on it.

        Raises:
            SignatureError: the signature, the certificate or the bytes do not verify.
        """
        verify_model(
            claim,
            signature,
            load_certificate(server_certificate),
            ca_certificate=self._ca,
            payload=payload,
        )
