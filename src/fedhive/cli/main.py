"""The ``fedhive`` command: the only place that prints for humans or exits."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from fedhive.cli import audit, deploy, new, provision, report, simulate
from fedhive.errors import FedhiveError

# Each subcommand module registers its parser and sets ``handler(args, console) -> int``.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    simulate.add_parser,
    deploy.add_parser,
    provision.add_parser,
    audit.add_parser,
    report.add_parser,
    new.add_parser,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedhive", description="Federated learning.")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedhive`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        return int(args.handler(args, console))
    except FedhiveError as exc:
        print(f"fedhive: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedhive: interrupted", file=sys.stderr)
        return 130
