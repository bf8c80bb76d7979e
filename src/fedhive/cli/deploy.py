"""``fedhive server`` and ``fedhive client``: one federation across real processes.

These commands parse a config and flags into :mod:`fedhive.deployment`'s objects and
render the run. The server runs the same round loop as ``fedhive simulate`` over the
gRPC transport with mutual TLS (FedBuff: the same asynchronous loop, each task with its
own deadline), from the app's server half only (``[server] app``); each client pulls its
tasks, trains on its own data (``--app``: the app's client half) and uploads. On SIGTERM the server
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

from fedhive.cli.progress import ProgressDisplay
from fedhive.client.app import ClientApp
from fedhive.config import RunConfig, load_config
from fedhive.core.messages import PrivacyBudget
from fedhive.deployment import DeployedServer, Deployment, serve_client
from fedhive.errors import ConfigError
from fedhive.pki.revocation import RevocationList
from fedhive.pki.tls import TLSConfig
from fedhive.privacy import FileLedger
from fedhive.server.app import ServerApp
from fedhive.server.run import Observers
from fedhive.server.store import RunTotals
from fedhive.simulation.app import AppContext, load_app
from fedhive.simulation.output import RunWriter
from fedhive.transport.grpc.connection import GrpcLink
from fedhive.transport.grpc.security import channel_credentials


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
    client.add_argument("--app", required=True, help="MODULE:FUNCTION(ctx) building the ClientApp")
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


class _Terminated(BaseException):
    """SIGTERM arrived: stop serving (a BaseException, so no ``except Exception`` in the
    round loop mistakes it for a failure)."""


def _terminate(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the close
    raise _Terminated


def _tls(args: argparse.Namespace, console: Console, command: str) -> TLSConfig | None:
    """The ``--certs`` folder's TLS material, or None with ``--insecure`` (warned)."""
    if args.insecure:
        console.print("[bold red]WARNING: --insecure: no TLS, no client authentication[/]")
        return None
    if args.certs is None:
        raise ConfigError(f"{command}: --certs is required (or --insecure for local experiments)")
    return TLSConfig.from_dir(args.certs)


def _server_app(config: RunConfig, base_dir: Path) -> ServerApp:
    """The server's half of the app, as ``[server] app`` names it."""
    if config.server.app is None:
        raise ConfigError(
            "server.app: required by fedhive server: 'module:function' building the "
            'ServerApp (initial model, central evaluation), e.g. "app:server"'
        )
    ctx = AppContext(params=config.app, seed=config.run.seed, base_dir=base_dir)
    return load_app(config.server.app, ctx, ServerApp, what="server.app")


def run_server(args: argparse.Namespace, console: Console) -> int:
    """Serve the run its config describes until its rounds are done (or SIGTERM: the
    state is whole after every commit, and the same command resumes it)."""
    _logging()
    config = load_config(args.config, deployed=True)
    tls = _tls(args, console, "server")
    revocations = RevocationList.from_dir(args.certs) if tls is not None else None
    deployment = Deployment(
        strategy=config.strategy,
        strategy_name=str(config.strategy_name),
        rounds=config.run.rounds,
        seed=config.run.seed,
        settings=config.server,
        secure=config.secagg,
        federated_every=config.evaluation.federated_every,
        centralized=config.evaluation.centralized,
        config=config.to_json(),
    )
    app = _server_app(config, args.config.resolve().parent)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with DeployedServer(
            app,
            deployment,
            state_dir=args.state,
            tls=tls,
            revocations=revocations,
            address=args.address,
        ) as server:
            if server.resumed_round:
                console.print(f"resuming run {server.run_id} after round {server.resumed_round}")
            writer = RunWriter(args.state, config.to_json(), resume=server.resumed_round > 0)
            console.print(f"listening on port {server.port}; waiting for clients", highlight=False)
            server.wait_for_clients()
            with ProgressDisplay(console, config.run.rounds) as display:
                served = server.run(Observers(writer, display))
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing may cut the close now
    except _Terminated:
        console.print("stopped by SIGTERM: the same command resumes the run", highlight=False)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    totals = served.totals
    wall = time.time() - totals.created_at  # the run's, from its creation: restarts included
    summary = writer.finish(
        served.result, seed=config.run.seed, wall_seconds=wall, totals=_whole_run(totals)
    )
    console.print_json(data=summary)
    if served.result.stop_reason:
        reason = served.result.stop_reason
        console.print(f"[bold yellow]run stopped early:[/] {reason}", highlight=False)
    return 0


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
    app = load_app(args.app, ctx, ClientApp, what="--app")
    tls = _tls(args, console, "client")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    done = serve_client(
        app,
        client_id=args.client_id,
        server=args.server,
        tls=tls,
        stop=stop,
        server_name=args.server_name,
        budget=_budget(args),
        ledger=_ledger(args),
    )
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
