"""Provisioning for deployment: a CA, server and client certificates, revocation.

Mutual TLS between one server and many clients, built with ``cryptography`` only:
:func:`provision` lays out a folder (see :mod:`fedhive.pki.provision`), each party loads
its :class:`TLSConfig`, and the server checks every call's peer against a
:class:`RevocationList` and reads who it is with :func:`client_id_of`.
"""

from fedhive.pki.authority import CertificateAuthority, Issued
from fedhive.pki.identity import client_id_of, load_certificate, san_client_ids
from fedhive.pki.provision import PkiLayout, Provisioned, add_client, provision, revoke
from fedhive.pki.registry import ClientRecord, read_registry
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig

__all__ = [
    "CertificateAuthority",
    "ClientRecord",
    "Issued",
    "PkiLayout",
    "Provisioned",
    "RevocationList",
    "TLSConfig",
    "add_client",
    "client_id_of",
    "load_certificate",
    "provision",
    "read_registry",
    "revoke",
    "san_client_ids",
]
