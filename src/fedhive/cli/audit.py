"""``fedhive audit verify STATE_DIR``: check a server's audit log for tampering."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from fedhive.pki.identity import load_certificate
from fedhive.pki.storage import read_bytes
from fedhive.pki.tls import CERT_FILE
from fedhive.server.store import verify_state


def add_parser(commands: Any) -> None:
    """Register the ``audit`` subcommand and its ``verify`` action."""
    audit = commands.add_parser("audit", help="inspect a server's audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser(
        "verify",
        help="check the audit log's hash chain, the rounds it records and its signed heads "
        "(exit 1 if anything is off)",
    )
    verify.add_argument(
        "state_dir", type=Path, metavar="STATE_DIR", help="the server's state folder"
    )
    verify.add_argument(
        "--cert",
        type=Path,
        help="the server's certificate (PEM, or its provisioned folder): check that every "
        "entry is under a head the server signed",
    )
    verify.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace, console: Console) -> int:
    """Verify ``STATE_DIR``'s audit log; 0 when intact, 1 when not."""
    path = args.cert / CERT_FILE if args.cert is not None and args.cert.is_dir() else args.cert
    certificate = None if path is None else load_certificate(read_bytes(path))
    report = verify_state(args.state_dir, certificate=certificate)

    def say(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    if not report.ok:
        where = f" at entry {report.first_bad_seq}" if report.first_bad_seq is not None else ""
        say(f"audit chain BROKEN{where}: {report.reason}")
        return 1
    say(f"audit chain OK: {report.entries} entries")
    say(f"head: {report.head}")
    if certificate is None:
        say("signatures: not checked (pass --cert with the server's certificate)")
    else:
        say(f"signatures: every entry is under a head signed by {path}")
    return 0
