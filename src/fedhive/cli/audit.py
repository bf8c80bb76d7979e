"""``fedhive audit verify STATE_DIR``: check a server's audit log for tampering."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from fedhive.server.store import DATABASE_NAME, verify_chain


def add_parser(commands: Any) -> None:
    """Register the ``audit`` subcommand and its ``verify`` action."""
    audit = commands.add_parser("audit", help="inspect a server's audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser(
        "verify", help="recompute the audit log's hash chain (exit 1 if it is broken)"
    )
    verify.add_argument(
        "state_dir", type=Path, metavar="STATE_DIR", help="the server's state folder"
    )
    verify.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace, console: Console) -> int:
    """Verify ``STATE_DIR/state.sqlite``'s audit chain; 0 when intact, 1 when broken."""
    report = verify_chain(args.state_dir / DATABASE_NAME)
    if report.ok:
        console.print(f"audit chain OK: {report.entries} entries", highlight=False, markup=False)
        console.print(f"head: {report.head}", highlight=False, markup=False, soft_wrap=True)
        return 0
    console.print(
        f"audit chain BROKEN at entry {report.first_bad_seq}: {report.reason}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return 1
