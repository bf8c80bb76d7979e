"""The deployed server: one federation's rounds over gRPC, durable in a state folder.

:class:`DeployedServer` bundles what a deployment needs around the round loop: the gRPC
transport (mutual TLS, result signatures, revocation), the state store and its
checkpoint (resume after the last closed round), the Status answer, and the rules a
deployment refuses (:func:`~fedhive.server.rules.check_run` with ``deployed=True``). It
takes objects, never a config file, and never prints or exits: ``fedhive server`` parses
the config and flags into them and renders what happens. :func:`serve_server` is the
whole run in one call.

Stopping: the server's state is whole after every commit. A caller that stops it
mid-run (``fedhive server`` on SIGTERM: an exception out of :meth:`DeployedServer.run`)
closes it with :meth:`DeployedServer.close`, which leaves the clients retrying so that
they rejoin when a server starts again on the same state folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fedhive.errors import NotEnoughClientsError
from fedhive.pki.revocation import FLOOR_FILE, RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.server.app import ServerApp
from fedhive.server.asynchronous import AsyncLoop
from fedhive.server.checkpoint import Resumed, StoreCheckpoint
from fedhive.server.history import RoundRecord
from fedhive.server.orchestrator import RoundLoop
from fedhive.server.rules import check_run
from fedhive.server.run import Observers, RunObserver, RunResult
from fedhive.server.secure import SecureAggregation
from fedhive.server.settings import ServerSection
from fedhive.server.store import HeadSigner, RunTotals, StateStore
from fedhive.strategy.algorithm import Algorithm
from fedhive.strategy.base import Strategy
from fedhive.strategy.registry import dispatch_loop
from fedhive.transport.grpc.asynchronous import GrpcAsyncRunner
from fedhive.transport.grpc.limits import PeerLimits
from fedhive.transport.grpc.security import CertificateIdentity, Signatures, server_credentials
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """What the server runs: the strategy, for how many rounds, from which seed, with
    which settings; ``config`` is the run's configuration as JSON data, recorded with
    the run (a resumed run keeps the one it was created with)."""

    strategy: Strategy
    strategy_name: str
    rounds: int
    seed: int = 0
    settings: ServerSection = field(default_factory=ServerSection)
    secure: SecureAggregation | None = None
    """Secure aggregation (SecAgg+) each round; None: none."""
    federated_every: int = 0
    """Federated evaluation every N rounds (0: never)."""
    centralized: bool = True
    """Evaluate each round with the app's ``evaluate_fn`` (when it has one)."""
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Served:
    """A finished deployment: the run's result and its figures over every process."""

    result: RunResult
    totals: RunTotals


class DeployedServer:
    """A deployment's server, listening from construction until :meth:`close`.

    Construction checks the run, starts serving, and opens (or resumes) the run in
    ``state_dir``; :meth:`wait_for_clients` then :meth:`run` serve its rounds. ``tls``
    None serves without TLS (loopback only; clients are not authenticated). The CRL
    floor of ``revocations`` is kept in ``state_dir`` (``crl-floor.json``, see
    :meth:`~fedhive.pki.RevocationList.keep_floor`), so a restart on an older CRL fails.

    Attributes:
        transport: the gRPC server transport, serving from construction.

    Raises:
        ConfigError: a run a deployment refuses (nothing is bound then), unusable
            TLS material, or a CRL older than one a server on ``state_dir`` accepted.
        TransportError: the address cannot be bound.
        StoreError: the state folder cannot be opened.
    """

    def __init__(
        self,
        app: ServerApp,
        deployment: Deployment,
        *,
        state_dir: Path,
        tls: TLSConfig | None,
        revocations: RevocationList | None = None,
        address: str | None = None,
    ) -> None:
        """Check the run, start serving, open or resume it (see the class)."""
        check_run(
            deployment.strategy,
            secure=deployment.secure,
            federated_every=deployment.federated_every,
            deployed=True,
        )
        if revocations is not None:  # before serving: a rolled-back CRL never serves
            revocations.keep_floor(Path(state_dir) / FLOOR_FILE)
        self._app, self._deployment = app, deployment
        self._finished = self._closed = False
        signer = HeadSigner.from_pem(tls.read()[2]) if tls is not None else None
        self.transport = server_transport(
            deployment.settings, address=address, tls=tls, revocations=revocations
        )
        try:
            self._store = StateStore(state_dir, signer=signer)
            self._checkpoint, self._resumed = StoreCheckpoint.open(
                self._store,
                new_run_id=self.transport.coordinator.run_id,
                strategy=deployment.strategy_name,
                seed=deployment.seed,
                config=deployment.config,
                initial=app.initial_weights,
                initial_state=deployment.strategy.initial_state(app.initial_weights),
            )
        except BaseException:
            self.transport.close(tell_clients=False)
            raise
        self.transport.coordinator.name_run(self._checkpoint.run_id)

    @property
    def run_id(self) -> str:
        """The run served (a resumed one keeps its id)."""
        return self._checkpoint.run_id

    @property
    def resumed_round(self) -> int:
        """The last round a previous server process closed (0: a new run)."""
        return self._resumed.round

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.transport.port

    def wait_for_clients(self) -> None:
        """Block until ``settings.min_clients`` clients joined.

        Raises:
            NotEnoughClientsError: fewer joined within ``settings.wait_timeout``.
        """
        settings = self._deployment.settings
        if not self.transport.wait_for_clients(settings.min_clients, settings.wait_timeout):
            raise NotEnoughClientsError(
                f"fewer than {settings.min_clients} clients joined within "
                f"{settings.wait_timeout:g}s"
            )

    def run(self, observer: RunObserver | None = None) -> Served:
        """Serve the rounds after the resumed one; each is committed before the next."""
        observers: list[RunObserver] = [_StatusBoard(self.transport)]
        if observer is not None:
            observers.append(observer)
        result = _run_rounds(
            self._app,
            self._deployment,
            transport=self.transport,
            observer=Observers(*observers),
            checkpoint=self._checkpoint,
            resumed=self._resumed,
        )
        self._finished = True
        return Served(result, self._checkpoint.totals())

    def close(self, *, linger: float = 5.0) -> None:
        """Stop serving and close the store; idempotent. After a finished run the
        clients are told (waiting up to ``linger`` seconds for them to hear it); after
        an interrupted one they are left retrying, to rejoin a restarted server."""
        if self._closed:
            return
        self._closed = True
        try:
            self.transport.close(linger=linger, tell_clients=self._finished)
        finally:
            self._store.close()

    def __enter__(self) -> DeployedServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def serve_server(
    app: ServerApp,
    deployment: Deployment,
    *,
    state_dir: Path,
    tls: TLSConfig | None,
    revocations: RevocationList | None = None,
    address: str | None = None,
    observer: RunObserver | None = None,
) -> Served:
    """Serve ``deployment`` until its rounds are done: wait for the clients, run the
    rounds (resuming the run in ``state_dir``), then tell the clients it is over.

    Raises:
        ConfigError: a run a deployment refuses (seeded DP noise among them).
        NotEnoughClientsError: too few clients joined in time.
    """
    with DeployedServer(
        app, deployment, state_dir=state_dir, tls=tls, revocations=revocations, address=address
    ) as server:
        server.wait_for_clients()
        return server.run(observer)


def server_transport(
    settings: ServerSection,
    *,
    address: str | None,
    tls: TLSConfig | None,
    revocations: RevocationList | None = None,
) -> GrpcServerTransport:
    """The gRPC server ``settings`` describe, on ``address`` (default: the settings'),
    serving now: mutual TLS with signed results under ``tls`` (refusing ``revocations``),
    or no TLS at all (loopback only) when ``tls`` is None."""
    limits = PeerLimits(
        header_timeout=settings.header_timeout,
        stall_timeout=settings.stall_timeout,
        streams_per_client=settings.streams_per_client,
        concurrent_uploads=settings.concurrent_uploads,
    )
    return GrpcServerTransport(
        address=address or settings.address,
        credentials=server_credentials(tls) if tls is not None else None,
        identify=CertificateIdentity(revocations) if tls is not None else trust_claimed_id,
        insecure=tls is None,
        round_timeout=settings.round_timeout,
        max_message_mib=settings.max_message_mib,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        signatures=Signatures(tls) if tls is not None else None,
        limits=limits,
        downlink=settings.downlink(),
    )


def _run_rounds(
    app: ServerApp,
    deployment: Deployment,
    *,
    transport: GrpcServerTransport,
    observer: RunObserver,
    checkpoint: StoreCheckpoint,
    resumed: Resumed,
) -> RunResult:
    """The rounds after ``resumed``: the round loop, or FedBuff's asynchronous loop (a
    version is a round; each task has the round timeout as its deadline)."""
    strategy = deployment.strategy
    evaluate_fn = app.evaluate_fn if deployment.centralized else None
    policy = deployment.settings.policy()

    def run_buffered(fedbuff: Algorithm) -> RunResult:
        runner = GrpcAsyncRunner(transport)
        buffered = AsyncLoop(
            strategy=fedbuff,
            runner=runner,
            seed=deployment.seed,
            evaluate_fn=evaluate_fn,
            observer=observer,
            checkpoint=checkpoint,
            policy=policy,
        )
        try:
            remaining = deployment.rounds - resumed.round
            return buffered.run(
                resumed.weights, remaining, resumed.state, first_round=resumed.round + 1
            )
        finally:
            runner.close()  # withdraws the tasks still in flight

    def run_rounds(synchronous: Strategy) -> RunResult:
        loop = RoundLoop(
            strategy=synchronous,
            transport=transport,
            seed=deployment.seed,
            evaluate_fn=evaluate_fn,
            federated_every=deployment.federated_every,
            observer=observer,
            checkpoint=checkpoint,
            secure=deployment.secure,
            policy=policy,
        )
        return loop.run(
            resumed.weights, deployment.rounds, first_round=resumed.round + 1, state=resumed.state
        )

    return dispatch_loop(strategy, rounds=run_rounds, buffered=run_buffered)


class _StatusBoard:
    """Keeps the server's Status answer current as rounds finish."""

    def __init__(self, transport: GrpcServerTransport) -> None:
        self._coordinator = transport.coordinator

    def round_started(self, round: int, num_tasks: int) -> None:
        """Nothing to show yet."""

    def client_finished(self, round: int, ok: bool) -> None:
        """Nothing to show per client."""

    def round_finished(self, record: RoundRecord) -> None:
        """Publish the new version and its metrics."""
        self._coordinator.publish_status(
            version=record.version,
            metrics={
                **{f"central_{k}": v for k, v in record.centralized.items()},
                **{f"federated_{k}": v for k, v in record.federated.items()},
            },
        )
