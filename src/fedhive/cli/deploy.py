"""``fedhive server`` and ``fedhive client``: one federation across real processes.

The server runs the same round loop as ``fedhive simulate`` over the gRPC transport
with mutual TLS (FedBuff: the same asynchronous loop, each task with its own deadline);
each client pulls its tasks, trains on its own data and uploads. On SIGTERM the server
exits 0 with its state whole, leaving its clients retrying so that they rejoin when it
starts again on the same state folder; a client the server refuses for good (revoked,
another id or schema) exits non-zero with that one message.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from fedhive.cli.progress import Observers, ProgressDisplay
from fedhive.cli.server_loop import run_loop
from fedhive.client.base import Client
from fedhive.client.runner import serve
from fedhive.core.messages import PrivacyBudget
from fedhive.errors import ConfigError, NotEnoughClientsError
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.privacy import FileLedger
from fedhive.server.checkpoint import Resumed, StoreCheckpoint
from fedhive.server.history import RoundRecord
from fedhive.server.run import RunResult
from fedhive.server.store import HeadSigner, RunTotals, StateStore
from fedhive.simulation.app import AppContext, AppSpec, SimulationApp, load_callable
from fedhive.simulation.config import ServerSection, SimulationConfig, load_config
from fedhive.simulation.output import RunWriter
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.limits import PeerLimits
from fedhive.transport.grpc.security import (
    CertificateIdentity,
    ClientSignatures,
    ServerCredentials,
    Signatures,
    channel_credentials,
    server_credentials,
)
from fedhive.transport.grpc.server import GrpcServerTransport, trust_claimed_id
from fedhive.transport.grpc.service import Identify


def add_parser(commands: Any) -> None:
    """Register the ``server`` and ``client`` subcommands."""
    server = commands.add_parser("server", help="run the federation's server (gRPC, mTLS)")
    server.add_argument("config", type=Path, help="the run's TOML config")
    server.add_argument("--state", type=Path, required=True, help="folder for the run's files")
    server.add_argument("--certs", type=Path, help="the provisioned server folder")
    server.add_argument("--address", help="HOST:PORT to listen on (default: [server] address)")
    server.add_argument("--insecure", action="store_true", help="no TLS (loopback only)")
    server.set_defaults(handler=run_server)
    client = commands.add_parser("client", help="join a federation as one client")
    client.add_argument("--server", required=True, help="the server's HOST:PORT")
    client.add_argument("--certs", type=Path, help="this client's provisioned folder")
    client.add_argument("--client-id", required=True)
    client.add_argument(
        "--app", required=True, help="MODULE:FUNCTION(client_id, ctx) building the Client"
    )
    client.add_argument(
        "--config", type=Path, help="a run config: its [app] table and seed reach the app"
    )
    client.add_argument("--server-name", default="localhost", help="name in the server cert")
    client.add_argument("--insecure", action="store_true", help="no TLS (local experiments)")
    client.add_argument(
        "--epsilon-max", type=float, help="this device's privacy budget (refuse beyond it)"
    )
    client.add_argument("--delta", type=float, default=1e-5, help="the budget's delta")
    client.add_argument(
        "--min-noise-multiplier",
        type=float,
        help="with --epsilon-max: add noise of std >= this times the clipping norm to "
        "every update, whatever the server asks (default: only the server's noise)",
    )
    client.add_argument(
        "--clipping-norm",
        type=float,
        help="with --epsilon-max: clip every update to this L2 norm, or the server's if "
        "smaller (default: the server's ClipAndNoise.clipping_norm)",
    )
    client.add_argument(
        "--ledger",
        type=Path,
        help="file of the privacy this device has spent (default: privacy-ledger.json "
        "in --certs, else privacy-ledger-<client-id>.json here)",
    )
    client.set_defaults(handler=run_client)
    status = commands.add_parser("status", help="ask a running server how its run is going")
    status.add_argument("--server", required=True, help="the server's HOST:PORT")
    status.add_argument("--certs", type=Path, help="a provisioned client folder")
    status.add_argument("--server-name", default="localhost", help="name in the server cert")
    status.add_argument("--insecure", action="store_true", help="no TLS (local experiments)")
    status.set_defaults(handler=run_status)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


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
        self._coordinator.latest_version = record.version
        self._coordinator.latest_metrics = {
            **{f"central_{k}": v for k, v in record.centralized.items()},
            **{f"federated_{k}": v for k, v in record.federated.items()},
        }


class _Terminated(BaseException):
    """SIGTERM arrived: stop serving (a BaseException, so no ``except Exception`` in the
    round loop mistakes it for a failure)."""


def _terminate(*_: object) -> None:
    raise _Terminated


def _security(
    args: argparse.Namespace, console: Console
) -> tuple[ServerCredentials | None, Identify, Signatures | None, HeadSigner | None]:
    """TLS credentials, caller identity, result signatures and the audit head's signer."""
    if args.insecure:
        console.print("[bold red]WARNING: --insecure: no TLS, no client authentication[/]")
        return None, trust_claimed_id, None, None
    if args.certs is None:
        raise ConfigError("server: --certs is required (or --insecure for local experiments)")
    tls = TLSConfig.from_dir(args.certs)
    identify = CertificateIdentity(RevocationList.from_dir(args.certs))
    signer = HeadSigner.from_pem(tls.read()[2])
    return server_credentials(tls), identify, Signatures(tls), signer


def server_transport(
    server: ServerSection,
    *,
    address: str | None,
    credentials: ServerCredentials | None,
    identify: Identify,
    insecure: bool,
    signatures: Signatures | None,
) -> GrpcServerTransport:
    """The gRPC server the ``[server]`` section describes, on ``address`` (default: the
    section's), serving now."""
    limits = PeerLimits(
        header_timeout=server.header_timeout,
        stall_timeout=server.stall_timeout,
        streams_per_client=server.streams_per_client,
        concurrent_uploads=server.concurrent_uploads,
    )
    return GrpcServerTransport(
        address=address or server.address,
        credentials=credentials,
        identify=identify,
        insecure=insecure,
        round_timeout=server.round_timeout,
        max_message_mib=server.max_message_mib,
        max_concurrent_rpcs=server.max_concurrent_rpcs,
        signatures=signatures,
        limits=limits,
    )


def run_server(args: argparse.Namespace, console: Console) -> int:
    """Serve the run its config describes until its rounds are done (or SIGTERM: the
    state is whole after every commit, and the same command resumes it)."""
    _logging()
    config = load_config(args.config, deployed=True)
    credentials, identify, signatures, signer = _security(args, console)
    app = AppSpec(config.run.app, args.config.resolve().parent).build(config.app, config.run.seed)
    transport = server_transport(
        config.server,
        address=args.address,
        credentials=credentials,
        identify=identify,
        insecure=args.insecure,
        signatures=signatures,
    )
    signal.signal(signal.SIGTERM, _terminate)
    finished = False
    try:
        with StateStore(args.state, signer=signer) as store:
            checkpoint, resumed = StoreCheckpoint.open(
                store,
                new_run_id=transport.coordinator.run_id,
                strategy=str(config.strategy_name),
                seed=config.run.seed,
                config=config.to_json(),
                initial=app.initial_weights,
                initial_state=config.strategy.initial_state(app.initial_weights),
            )
            transport.coordinator.run_id = checkpoint.run_id
            if resumed.round:
                console.print(f"resuming run {checkpoint.run_id} after round {resumed.round}")
            writer = RunWriter(args.state, config.to_json(), resume=resumed.round > 0)
            result = _serve(
                config,
                app,
                transport=transport,
                console=console,
                writer=writer,
                checkpoint=checkpoint,
                resumed=resumed,
            )
            totals = checkpoint.totals()
            finished = True
    except _Terminated:
        console.print("stopped by SIGTERM: the same command resumes the run", highlight=False)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the close
        transport.close(linger=5.0, tell_clients=finished)
    wall = time.time() - totals.created_at  # the run's, from its creation: restarts included
    summary = writer.finish(
        result, seed=config.run.seed, wall_seconds=wall, totals=_whole_run(totals)
    )
    console.print_json(data=summary)
    if result.stop_reason:
        console.print(f"[bold yellow]run stopped early:[/] {result.stop_reason}", highlight=False)
    return 0


def _serve(
    config: SimulationConfig,
    app: SimulationApp,
    *,
    transport: GrpcServerTransport,
    console: Console,
    writer: RunWriter,
    checkpoint: StoreCheckpoint,
    resumed: Resumed,
) -> RunResult:
    """Wait for the clients, then run the rounds after ``resumed``."""
    console.print(f"listening on port {transport.port}; waiting for clients", highlight=False)
    if not transport.wait_for_clients(config.server.min_clients, config.server.wait_timeout):
        raise NotEnoughClientsError(
            f"fewer than {config.server.min_clients} clients joined within "
            f"{config.server.wait_timeout:g}s"
        )
    with ProgressDisplay(console, config.run.rounds) as display:
        observer = Observers(writer, display, _StatusBoard(transport))
        return run_loop(
            config,
            app,
            transport=transport,
            observer=observer,
            checkpoint=checkpoint,
            resumed=resumed,
        )


def _whole_run(totals: RunTotals) -> dict[str, Any]:
    """The summary's figures for every round of the run, whichever process ran it."""
    return {
        "rounds": totals.last_round,
        "committed_rounds": totals.committed_rounds,
        "bytes_up": totals.bytes_up,
        "bytes_down": totals.bytes_down,
        "clients_failed": totals.clients_failed,
        "restarts": totals.restarts,
    }


def run_client(args: argparse.Namespace, console: Console) -> int:
    """Work for the server until the run finishes or a signal stops this client."""
    _logging()
    if args.config is not None:
        config = load_config(args.config)
        base = args.config.resolve().parent
        ctx = AppContext(params=config.app, seed=config.run.seed, base_dir=base)
    else:
        ctx = AppContext(params={}, seed=0, base_dir=Path.cwd())
    client = load_callable(args.app, ctx.base_dir, what="--app")(args.client_id, ctx)
    if not isinstance(client, Client):
        raise ConfigError(f"--app: {args.app} returned {type(client).__name__}, not a Client")
    client_signatures = None
    if args.insecure:
        credentials = None
        console.print("[bold red]WARNING: --insecure: no TLS[/]")
    elif args.certs is None:
        raise ConfigError("client: --certs is required (or --insecure for local experiments)")
    else:
        tls = TLSConfig.from_dir(args.certs)
        credentials = channel_credentials(tls)
        client_signatures = ClientSignatures(tls)
    link = GrpcLink(
        args.server,
        client_id=args.client_id,
        credentials=credentials,
        server_name=None if args.insecure else args.server_name,
        signatures=client_signatures,
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        done = serve(link, client, stop=stop, budget=_budget(args), ledger=_ledger(args))
    finally:
        link.close()
    console.print(f"client {args.client_id}: {done} tasks done", highlight=False)
    return 0


def _budget(args: argparse.Namespace) -> PrivacyBudget | None:
    if args.epsilon_max is None:
        if args.min_noise_multiplier is not None or args.clipping_norm is not None:
            raise ConfigError(
                "client: --min-noise-multiplier and --clipping-norm need --epsilon-max"
            )
        return None
    return PrivacyBudget(
        epsilon_max=args.epsilon_max,
        delta=args.delta,
        min_noise_multiplier=args.min_noise_multiplier,
        clipping_norm=args.clipping_norm,
    )


def _ledger(args: argparse.Namespace) -> FileLedger:
    if args.ledger is not None:
        return FileLedger(args.ledger)
    if args.certs is not None:
        return FileLedger(args.certs / "privacy-ledger.json")
    return FileLedger(Path(f"privacy-ledger-{args.client_id}.json"))


def run_status(args: argparse.Namespace, console: Console) -> int:
    """Print the server's run, round, connected clients and latest metrics."""
    if args.insecure:
        credentials = None
    elif args.certs is None:
        raise ConfigError("status: --certs is required (or --insecure for local experiments)")
    else:
        credentials = channel_credentials(TLSConfig.from_dir(args.certs))
    link = GrpcLink(
        args.server,
        client_id="",
        credentials=credentials,
        server_name=None if args.insecure else args.server_name,
        timeout=10,
    )
    try:
        console.print_json(data=link.status())
    finally:
        link.close()
    return 0
