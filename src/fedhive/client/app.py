"""The clients' half of an app: how to build one client, by its id.

A deployed client process builds its own client from it (``fedhive client --app``); a
simulation builds every simulated client from the same object.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhive.client.base import ClientFn


@dataclass(frozen=True, kw_only=True)
class ClientApp:
    """Builds the client with a given id (lazily: only the ids that are asked for)."""

    client_fn: ClientFn
