"""A deployed client process: one client of the app, working for a server over gRPC.

:func:`serve_client` is the client's half of the entry pair (:func:`~fedhive.deployment.
server.serve_server` the server's): it builds this device's client from its
:class:`~fedhive.client.app.ClientApp`, connects (mutual TLS, signed results) and works
until told to stop or the run ends (:func:`fedhive.client.runner.serve`).
"""

from __future__ import annotations

import threading

from fedhive.client.app import ClientApp
from fedhive.client.base import Client
from fedhive.client.runner import serve
from fedhive.core.messages import PrivacyBudget
from fedhive.errors import ConfigError
from fedhive.pki.tls import TLSConfig
from fedhive.privacy import FileLedger
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.security import ClientSignatures, channel_credentials


def serve_client(
    app: ClientApp,
    *,
    client_id: str,
    server: str,
    tls: TLSConfig | None,
    stop: threading.Event,
    server_name: str = "localhost",
    budget: PrivacyBudget | None = None,
    ledger: FileLedger | None = None,
) -> int:
    """Work for the server at ``server`` (``HOST:PORT``) as ``client_id`` until ``stop``
    is set or the run ends; returns the number of tasks whose outcome it received.

    ``tls`` None connects without TLS (local experiments only); ``budget`` and
    ``ledger`` are the device's own privacy budget and record, see
    :func:`fedhive.client.runner.serve`.

    Raises:
        ConfigError: the app built something that is not a Client.
        PeerRejectedError: the server refused this client for good (not retried).
    """
    client = app.client_fn(client_id)
    if not isinstance(client, Client):
        raise ConfigError(f"client app: built a {type(client).__name__}, not a Client")
    link = GrpcLink(
        server,
        client_id=client_id,
        credentials=channel_credentials(tls) if tls is not None else None,
        server_name=server_name if tls is not None else None,
        signatures=ClientSignatures(tls) if tls is not None else None,
    )
    try:
        return serve(link, client, stop=stop, budget=budget, ledger=ledger)
    finally:
        link.close()
