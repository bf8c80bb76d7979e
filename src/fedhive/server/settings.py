"""The deployment server's settings: the ``[server]`` section of a run config.

They live with the server, below both entry points: the simulation config reads them
(``max_examples`` caps a reply's weight in both modes) and the deployment serves with
them, without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedhive.core.config import check_int, check_real
from fedhive.errors import ConfigError
from fedhive.server.verify import DEFAULT_MAX_EXAMPLES, ReplyPolicy


@dataclass(frozen=True, kw_only=True)
class ServerSection:
    """The deployment server: its app, where it listens, how long rounds and start-up may
    take, and how much of it one peer may hold (the gRPC transport's ``PeerLimits``)."""

    app: str | None = None
    """``"module:function"`` building the server's half of the app (``function(ctx) ->
    ServerApp``: initial model, central evaluation); ``fedhive server`` requires it."""
    address: str = "127.0.0.1:8443"
    round_timeout: float = 60.0
    min_clients: int = 1
    wait_timeout: float = 300.0
    max_message_mib: int = 256
    max_examples: int = DEFAULT_MAX_EXAMPLES
    """The most examples one reply may claim (simulation too): caps a client's weight."""
    header_timeout: float = 10.0
    """Seconds an upload may take to send its header."""
    stall_timeout: float = 30.0
    """Seconds an upload (a download's reader) may take for its next chunk."""
    streams_per_client: int = 2
    """Uploads and downloads one client may have open at once."""
    concurrent_uploads: int = 8
    """Uploads received at once (the server's memory follows this number)."""
    max_concurrent_rpcs: int = 256
    """Calls admitted at once (running or queued); more are refused."""

    def __post_init__(self) -> None:
        if self.app is not None and not self.app:
            raise ConfigError("app: must look like 'module:function', got ''")
        check_real("round_timeout", self.round_timeout, low=0, low_open=True)
        check_int("min_clients", self.min_clients, minimum=1)
        check_real("wait_timeout", self.wait_timeout, low=0)
        check_int("max_message_mib", self.max_message_mib, minimum=1)
        check_real("header_timeout", self.header_timeout, low=0, low_open=True)
        check_real("stall_timeout", self.stall_timeout, low=0, low_open=True)
        check_int("streams_per_client", self.streams_per_client, minimum=1)
        check_int("concurrent_uploads", self.concurrent_uploads, minimum=1)
        check_int("max_concurrent_rpcs", self.max_concurrent_rpcs, minimum=1)
        self.policy()  # refuse a cap out of range here, with the key's name

    def policy(self) -> ReplyPolicy:
        """What the server accepts from one reply."""
        return ReplyPolicy(max_examples=self.max_examples)
