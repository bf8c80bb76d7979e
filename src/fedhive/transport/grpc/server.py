"""The gRPC server transport: the round loop's Transport, served to pulling clients.

``fit``/``evaluate`` publish one task per selected client and stream back outcomes as
uploads arrive; when every task is answered, or the round's deadline passes, the cohort
closes: unanswered tasks become failures (``transport:DeadlineExceeded``, or the last
refused upload's failure, e.g. ``upload:SignatureError``) and a late upload is told
``ROUND_CLOSED``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from typing import TypeVar

import grpc

from fedhive.core.failures import FailureKind, Stage
from fedhive.core.messages import (
    EvaluateReply,
    EvaluateTask,
    Failure,
    FitReply,
    FitTask,
    SecAggAnswer,
    SecAggReply,
    SecAggTask,
)
from fedhive.core.serde import sha256_hex
from fedhive.core.version import ModelVersion
from fedhive.errors import ConfigError, TransportError
from fedhive.transport.base import (
    EvaluateOutcome,
    FitOutcome,
    Quorum,
    SecureOutcome,
    StageOutcome,
    round_closed,
)
from fedhive.transport.downlink import Downlink
from fedhive.transport.grpc.coordinator import Coordinator, Outcome
from fedhive.transport.grpc.limits import PeerLimits
from fedhive.transport.grpc.security import Signatures
from fedhive.transport.grpc.service import Identify, Servicer, handler

log = logging.getLogger("fedhive.server")
_MiB = 1 << 20


def trust_claimed_id(context: grpc.ServicerContext, claimed: str) -> str:
    """Identity for ``insecure`` local experiments: the id the client claims."""
    return claimed or "anonymous"


class GrpcServerTransport:
    """Serves tasks to remote clients over gRPC; a :class:`Transport` for the round loop.

    Args:
        address: ``host:port`` to bind (port 0: any free port, see ``port``).
        credentials: server TLS credentials; None only with ``insecure=True``, which
            also refuses any address but loopback.
        identify: how a call's client id is established (from the peer certificate
            under mutual TLS).
        round_timeout: seconds a cohort waits for results before closing.
        workers: threads serving calls.
        max_concurrent_rpcs: calls admitted at once (running or queued for a thread);
            more are refused with ``RESOURCE_EXHAUSTED``.
        limits: how many streams one client may hold, and for how long it may stall
            (without TLS, callers are not identified, and streams are not counted per
            client: the timeouts still apply).
        downlink: what a download streams (default: always the full model; see
            :class:`~fedhive.transport.downlink.Downlink` for deltas).

    Attributes:
        limits: the limits in force (``limits``, or the defaults).
        max_concurrent_rpcs: as given.
    """

    def __init__(
        self,
        *,
        address: str,
        credentials: grpc.ServerCredentials | None,
        identify: Identify,
        insecure: bool = False,
        run_id: str | None = None,
        round_timeout: float = 60.0,
        max_message_mib: int = 256,
        workers: int = 16,
        max_concurrent_rpcs: int = 256,
        signatures: Signatures | None = None,
        limits: PeerLimits | None = None,
        downlink: Downlink | None = None,
    ) -> None:
        host = address.rsplit(":", 1)[0].strip("[]")
        if credentials is None and not insecure:
            raise ConfigError("server: TLS credentials are required (insecure=True to opt out)")
        if insecure and host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"server: insecure mode binds only to loopback, not {host!r}")
        if credentials is not None and signatures is None:
            raise ConfigError("server: with TLS, results must be signed (pass signatures)")
        self._signatures = signatures
        self.limits = limits or PeerLimits()
        self.max_concurrent_rpcs = max_concurrent_rpcs
        self.coordinator = Coordinator(run_id=run_id or uuid.uuid4().hex[:12], downlink=downlink)
        self._round_timeout = round_timeout
        options = [
            ("grpc.max_receive_message_length", 16 * _MiB),
            ("grpc.max_send_message_length", 16 * _MiB),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            options=options,
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )
        self._servicer = Servicer(
            self.coordinator,
            identify=identify,
            max_upload_bytes=max_message_mib * _MiB,
            signatures=signatures,
            limits=self.limits,
            identified=credentials is not None,
        )
        self._server.add_generic_rpc_handlers((handler(self._servicer),))
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            self._servicer.close()
            raise TransportError(f"server: cannot bind {address}")
        self._server.start()
        log.info("serving on %s (port %d)", address, self.port)

    @property
    def round_timeout(self) -> float:
        """Seconds a published task waits for its result."""
        return self._round_timeout

    def client_ids(self) -> Sequence[str]:
        """Clients heard from recently."""
        return self.coordinator.live_clients()

    def downloaded(self, client_id: str, version: str) -> int | None:
        """Model bytes of ``version`` the download streams sent ``client_id`` (see
        :class:`~fedhive.transport.base.MeasuresDownlink`): the caller's certificate
        names it under TLS, its ``ModelRequest`` without (insecure, loopback only)."""
        return self.coordinator.downloaded(client_id, version)

    def wait_for_clients(self, count: int, timeout: float) -> bool:
        """Block until ``count`` clients are live, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while len(self.client_ids()) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def fit(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, quorum: Quorum | None = None
    ) -> Iterator[FitOutcome]:
        """Publish fit tasks now; stream outcomes until ``quorum`` is met (the round loop
        counts the results it verified; default: all answered) or time runs out."""
        collected = self._collect(tasks, self._publish(tasks, model), quorum)
        return (as_reply(FitReply, o) for o in collected)

    def evaluate(
        self, tasks: Sequence[EvaluateTask], model: ModelVersion
    ) -> Iterator[EvaluateOutcome]:
        """Publish evaluate tasks now; stream their outcomes."""
        collected = self._collect(tasks, self._publish(tasks, model))
        return (as_reply(EvaluateReply, o) for o in collected)

    def close(self, *, linger: float = 0.0, tell_clients: bool = True) -> None:
        """Tell clients the run is over, wait ``linger`` seconds for them to hear it,
        then stop serving (bounded: see NOTES on gRPC shutdown). ``tell_clients=False``
        (a server stopped mid-run) leaves them retrying, to rejoin its restart."""
        if tell_clients:
            self.coordinator.finished = True
            deadline = time.monotonic() + linger
            while linger and self.coordinator.live_clients() and time.monotonic() < deadline:
                time.sleep(0.05)
        self._server.stop(grace=1.0).wait(timeout=5.0)
        self._servicer.close()

    def publish(
        self,
        tasks: Sequence[FitTask] | Sequence[EvaluateTask] | Sequence[SecAggTask],
        payload: bytes,
        *,
        keep: bool = False,
        secagg: Mapping[str, bytes] | None = None,
    ) -> tuple[int, float]:
        """Queue tasks for their clients with their model's bytes, signed (the model
        replaces the published ones, or joins them with ``keep``); cohort, deadline.

        The tasks name one model version; the deadline is ``round_timeout`` from now.
        """
        deadline = time.time() + self._round_timeout
        if not tasks:
            return 0, deadline
        sign = None
        if self._signatures is not None and not isinstance(tasks[0], SecAggTask):
            sign = self._signatures.sign_task  # each task: its config, seed, deadline, setup
        cohort, _ids = self.coordinator.publish(
            tasks, payload, deadline, sign=sign, keep=keep, secagg=secagg
        )
        return cohort, deadline

    def fit_secure(
        self, tasks: Sequence[FitTask], model: ModelVersion, *, setup: bytes
    ) -> Iterator[SecureOutcome]:
        """Publish fit tasks carrying the SecAgg round's setup; each client answers with
        its first protocol message (a plaintext update is refused on upload)."""
        setups = {task.client_id: setup for task in tasks}
        published = self.publish(tasks, model.data, secagg=setups) if tasks else None
        for outcome in self._collect(tasks, published or (0, time.time())):
            if isinstance(outcome, (SecAggReply, Failure)):
                yield outcome

    def exchange(self, round: int, messages: Mapping[str, bytes]) -> Iterator[StageOutcome]:
        """Publish one SecAgg task per client with its stage request; yield the answers
        (and failures for those that do not answer by the deadline)."""
        tasks = [
            SecAggTask(round=round, client_id=cid, version=sha256_hex(message))
            for cid, message in sorted(messages.items())
        ]
        published = self.publish(tasks, b"", secagg=messages) if tasks else None
        for outcome in self._collect(tasks, published or (0, time.time())):
            if isinstance(outcome, SecAggAnswer):
                yield outcome.client_id, outcome.message
            elif isinstance(outcome, Failure):
                yield outcome

    def _publish(
        self, tasks: Sequence[FitTask] | Sequence[EvaluateTask], model: ModelVersion
    ) -> tuple[int, float]:
        """A round's cohort: its model (bytes as the round loop made them) replaces the
        published ones."""
        if not tasks:
            return 0, time.time() + self._round_timeout
        return self.publish(tasks, model.data)

    def _collect(
        self,
        tasks: Sequence[FitTask] | Sequence[EvaluateTask] | Sequence[SecAggTask],
        published: tuple[int, float],
        quorum: Quorum | None = None,
    ) -> Iterator[Outcome]:
        """Outcomes of the cohort; then failures for the unanswered (deadline passed, or
        the quorum was met without them).

        ``quorum`` is read after each outcome was consumed: by then the round loop has
        verified it and counted it if it passed, so unverified uploads never close it.
        """
        cohort, deadline = published
        if not tasks:
            return
        for outcome in self.coordinator.outcomes(cohort, len(tasks), deadline):
            yield outcome
            if quorum is not None and quorum.met:
                break
        timed_out = time.time() >= deadline
        for withdrawn in self.coordinator.close_cohort(cohort):
            yield self.unanswered(withdrawn.envelope.task, withdrawn.refused, timed_out=timed_out)

    def unanswered(
        self,
        task: FitTask | EvaluateTask | SecAggTask,
        refused: Failure | None,
        *,
        timed_out: bool = True,
    ) -> Failure:
        """The failure of a task withdrawn without a result: its last refused upload
        (e.g. ``upload:SignatureError``), else the deadline or the quorum that closed it."""
        if refused is not None:
            return refused
        if not timed_out:
            return round_closed(task.client_id, task.round)
        return Failure(
            client_id=task.client_id,
            round=task.round,
            stage=Stage.TRANSPORT,
            kind=FailureKind.DEADLINE,
            message=f"no result within {self._round_timeout:g}s",
        )


_Reply = TypeVar("_Reply", FitReply, EvaluateReply)


def as_reply(
    kind: type[_Reply], outcome: Outcome, *, stage: Stage = Stage.VERIFY
) -> _Reply | Failure:
    """``outcome`` if it is a ``kind`` reply or a failure; any other reply to the task
    (e.g. an evaluation answering a fit task) is that client's failure at ``stage``, not
    dropped. (The outcome's client and round come from the task's envelope.)"""
    if isinstance(outcome, (kind, Failure)):
        return outcome
    return Failure(
        client_id=outcome.client_id,
        round=outcome.round,
        stage=stage,
        kind=FailureKind.VALIDATION,
        message=f"a {kind.__name__} was due, the client sent a {type(outcome).__name__}",
    )
