"""``fedhive provision``: certificates for a deployment (mutual TLS), and their upkeep.

One command with an optional action; without one it creates a new folder::

    fedhive provision --out DIR --clients N [--server-name HOST ...]
    fedhive provision add-client --out DIR [--client-id ID]
    fedhive provision revoke --out DIR CLIENT_ID
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from fedhive.errors import ConfigError
from fedhive.pki import PkiLayout, add_client, provision, revoke

_USAGE = """%(prog)s --out DIR --clients N [--server-name HOST ...]
       %(prog)s add-client --out DIR [--client-id ID]
       %(prog)s revoke --out DIR CLIENT_ID"""

_EPILOG = """\
actions:
  (none)       create DIR: a CA, a server certificate and N client certificates
  add-client   issue one more client certificate in an existing DIR
  revoke       revoke a client: its serial goes into DIR/server/crl.pem

Private keys are written unencrypted (mode 0600): protect DIR, and keep DIR/ca/ca.key
offline once provisioning is done. Run 'fedhive provision ACTION -h' for an action's
options.
"""


# An action's --out must not reset one given before the action (argparse copies every
# default of a sub-parser over the parent's values), hence SUPPRESS and a check in _out.
_OUT: dict[str, Any] = {
    "type": Path,
    "default": argparse.SUPPRESS,
    "metavar": "DIR",
    "help": "a provisioned folder (required; may also come before the action)",
}


def add_parser(commands: Any) -> None:
    """Register the ``provision`` subcommand and its ``add-client`` and ``revoke`` actions."""
    prov = commands.add_parser(
        "provision",
        help="create or update TLS certificates for a deployment",
        description="Certificates for mutual TLS between one server and its clients.",
        usage=_USAGE,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prov.add_argument("--out", type=Path, default=None, metavar="DIR", help="the folder to create")
    prov.add_argument("--clients", type=int, default=None, metavar="N", help="number of clients")
    prov.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="HOST",
        help="DNS name or IP address of the server (repeatable; localhost and 127.0.0.1 "
        "are always included)",
    )
    prov.set_defaults(handler=run_create)
    # An action's parser sets its own handler, which replaces run_create.
    actions = prov.add_subparsers(dest="action", metavar="ACTION", required=False, prog=prov.prog)
    add = actions.add_parser("add-client", help="issue a certificate for one more client")
    add.add_argument("--out", **_OUT)
    add.add_argument("--client-id", default=None, help="the new id (default: next client-NNNN)")
    add.set_defaults(handler=run_add_client)
    rev = actions.add_parser("revoke", help="revoke a client's certificate")
    rev.add_argument("--out", **_OUT)
    rev.add_argument("client_id", metavar="CLIENT_ID", help="the client to revoke")
    rev.set_defaults(handler=run_revoke)


def run_create(args: argparse.Namespace, console: Console) -> int:
    """Create a provisioning folder and print what is where."""
    if args.out is None or args.clients is None:
        raise ConfigError(
            "provision: --out DIR and --clients N are required to create a folder "
            "(or give an action: add-client, revoke)"
        )
    result = provision(args.out, clients=args.clients, server_names=args.server_name)
    layout = result.layout
    _say(console, f"CA:      {layout.ca_dir}/ (ca.pem, ca.key; keep ca.key offline)")
    _say(console, f"server:  {layout.server_dir}/ (ca.pem, cert.pem, key.pem, crl.pem)")
    _say(console, f"         names: {', '.join(result.server_names)}")
    _say(console, f"clients: {len(result.clients)} in {layout.clients_dir}/")
    for record in result.clients:
        _say(console, f"  {record.client_id}  {layout.client_dir(record.client_id)}/")
    _say(console, f"registry: {layout.registry}")
    _say(console, "private keys are unencrypted (mode 0600): protect this folder")
    return 0


def run_add_client(args: argparse.Namespace, console: Console) -> int:
    """Issue one more client certificate and print its id and folder."""
    record = add_client(_out(args), args.client_id)
    folder = PkiLayout(args.out).client_dir(record.client_id)
    _say(console, f"client {record.client_id}: {folder}/ (ca.pem, cert.pem, key.pem)")
    _say(console, f"serial {record.serial:#x}, valid until {record.not_after.isoformat()}")
    return 0


def run_revoke(args: argparse.Namespace, console: Console) -> int:
    """Revoke a client and say where the new CRL is."""
    record = revoke(_out(args), args.client_id)
    crl = PkiLayout(args.out).crl
    _say(console, f"revoked {record.client_id} (serial {record.serial:#x})")
    _say(console, f"CRL: {crl}; a server reading it refuses the client from its next call")
    return 0


def _out(args: argparse.Namespace) -> Path:
    if args.out is None:
        raise ConfigError(f"provision {args.action}: --out DIR is required")
    return Path(args.out)


def _say(console: Console, line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True, markup=False)
