"""What one peer may hold on the server: how many streams, and for how long it may stall.

gRPC's Python server gives every call one worker thread for as long as its handler
runs, and a streaming handler runs while it waits for the peer: for an upload's next
message, or for a download's reader to make room. Two limits keep a peer from holding
the threads everyone needs:

- :class:`StreamLimits`: at most ``per_client`` open streams per client; a further
  one is refused at once (``RESOURCE_EXHAUSTED``). An honest client has one at a time
  (two for a moment, as a download's end and the next upload overlap).
- :class:`Watchdog`: one thread that cancels a call whose peer has not sent its next
  message (or read the last one) by a deadline, which frees the handler's thread.

What remains: several certificates together hold ``per_client`` threads each, for at
most the timeouts; the calls waiting meanwhile are served in order once those are cut
off, and calls beyond the server's ``max_concurrent_rpcs`` are refused.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from fedhive.errors import ConfigError

log = logging.getLogger("fedhive.server")


@dataclass(frozen=True, kw_only=True)
class PeerLimits:
    """How much of the server one peer may hold, and for how long.

    Attributes:
        header_timeout: seconds an upload may take to send its header.
        stall_timeout: seconds an upload may take to send its next data chunk, and a
            download's reader to take the next chunk (an upload must also end by its
            task's deadline).
        streams_per_client: uploads and downloads one client may have open at once.
        concurrent_uploads: uploads received at once (memory follows this number).
    """

    header_timeout: float = 10.0
    stall_timeout: float = 30.0
    streams_per_client: int = 2
    concurrent_uploads: int = 8

    def __post_init__(self) -> None:
        for name in ("header_timeout", "stall_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        for name in ("streams_per_client", "concurrent_uploads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)!r}")


class StreamLimits:
    """Counts each client's open streams; refuses one beyond ``per_client`` (None: no
    limit, for callers that are not identified).

    Thread-safe. A stream is released when its call ends (``context.add_callback``),
    however it ends.
    """

    def __init__(self, *, per_client: int | None) -> None:
        self._per_client = per_client
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, context: grpc.ServicerContext, client_id: str, method: str) -> None:
        """Count a new stream of ``client_id``, or abort the call if it has too many."""
        if self._per_client is None:
            return
        with self._lock:
            full = self._open[client_id] >= self._per_client
            if not full:
                self._open[client_id] += 1
        if full:
            log.warning(
                "%s from %s (%s) refused: %d streams open already",
                method,
                client_id,
                context.peer(),
                self._per_client,
            )
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"at most {self._per_client} streams per client at a time",
            )
        if not context.add_callback(lambda: self._release(client_id)):
            self._release(client_id)  # the call has ended already

    def open_streams(self, client_id: str) -> int:
        """How many streams ``client_id`` has open now."""
        with self._lock:
            return self._open[client_id]

    def _release(self, client_id: str) -> None:
        with self._lock:
            self._open[client_id] -= 1
            if self._open[client_id] <= 0:
                del self._open[client_id]


@dataclass
class _Watch:
    deadline: float  # time.monotonic()
    context: grpc.ServicerContext
    what: str


class Watchdog:
    """Cancels calls whose peer misses a deadline; one daemon thread for the server."""

    def __init__(self) -> None:
        self._watches: dict[int, _Watch] = {}
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fedhive-watchdog", daemon=True)
        self._thread.start()

    @contextmanager
    def within(self, context: grpc.ServicerContext, seconds: float, what: str) -> Iterator[None]:
        """Cancel the call unless the block ends within ``seconds``; ``what`` says in
        the log line what did not come (e.g. "UploadResult from c: no header in 10s")."""
        key = next(self._ids)
        with self._wake:
            self._watches[key] = _Watch(time.monotonic() + max(0.0, seconds), context, what)
            self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._watches.pop(key, None)

    def close(self) -> None:
        """Stop the thread (calls still watched are left alone)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._closed:
                    return
                now = time.monotonic()
                due = [k for k, w in self._watches.items() if w.deadline <= now]
                expired = [self._watches.pop(k) for k in due]
                if not expired:
                    soonest = min((w.deadline for w in self._watches.values()), default=now + 60)
                    self._wake.wait(timeout=min(soonest - now, 60.0))
                    continue
            for watch in expired:
                log.warning("%s (%s): call cancelled", watch.what, watch.context.peer())
                watch.context.cancel()
