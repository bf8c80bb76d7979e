"""The deployment server's settings: the ``[server]`` section of a run config.

They live with the server, below both entry points: the run config reads them
(``max_examples`` caps a reply's weight in both modes) and the deployment serves with
them, without either importing the other. The section is a msgspec Struct: a config
decodes it with its constraints checked (:mod:`fedhive.core.decode`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from fedhive.core.decode import AtLeastOne, FiniteNonNegative, FinitePositive
from fedhive.server.verify import DEFAULT_MAX_EXAMPLES, MAX_EXAMPLES, ReplyPolicy
from fedhive.transport.downlink import Downlink


class ServerSection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The deployment server: its app, where it listens, how long rounds and start-up may
    take, and how much of it one peer may hold (the gRPC transport's ``PeerLimits``)."""

    app: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    """``"module:function"`` building the server's half of the app (``function(ctx) ->
    ServerApp``: initial model, central evaluation); ``fedhive server`` requires it."""
    address: str = "127.0.0.1:8443"
    round_timeout: FinitePositive = 60.0
    min_clients: AtLeastOne = 1
    wait_timeout: FiniteNonNegative = 300.0
    max_message_mib: AtLeastOne = 256
    max_examples: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXAMPLES)] = DEFAULT_MAX_EXAMPLES
    """The most examples one reply may claim (simulation too): caps a client's weight."""
    header_timeout: FinitePositive = 10.0
    """Seconds an upload may take to send its header."""
    stall_timeout: FinitePositive = 30.0
    """Seconds an upload (a download's reader) may take for its next chunk."""
    streams_per_client: AtLeastOne = 2
    """Uploads and downloads one client may have open at once."""
    concurrent_uploads: AtLeastOne = 8
    """Uploads received at once (the server's memory follows this number)."""
    max_concurrent_rpcs: AtLeastOne = 256
    """Calls admitted at once (running or queued); more are refused."""
    delta_downlink: bool = False
    """Send a client that holds an earlier model the lossless delta against it when that
    is smaller than the model (``fedhive.transport.delta``; simulation: count its size)."""

    def downlink(self) -> Downlink:
        """What downloads send: the model, or with ``delta_downlink`` its delta."""
        return Downlink(delta=self.delta_downlink)

    def policy(self) -> ReplyPolicy:
        """What the server accepts from one reply."""
        return ReplyPolicy(max_examples=self.max_examples)
