"""The ``fedhive`` command: the only place that prints for humans or exits."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from fedhive.cli.progress import Observers, ProgressDisplay
from fedhive.errors import FedhiveError
from fedhive.simulation.config import load_config
from fedhive.simulation.engine import simulate
from fedhive.simulation.output import RunWriter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedhive", description="Federated learning.")
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate", help="run a federation of virtual clients")
    sim.add_argument("config", type=Path, help="the run's TOML config")
    sim.add_argument("--out", type=Path, default=None, help="output folder (default runs/NAME)")
    sim.add_argument("--seed", type=int, default=None, help="override run.seed")
    sim.add_argument("--backend", choices=["local", "process"], default=None)
    return parser


def _simulate(args: argparse.Namespace, console: Console) -> int:
    config = load_config(args.config).with_overrides(seed=args.seed, backend=args.backend)
    out = args.out or Path("runs") / args.config.resolve().parent.name
    writer = RunWriter(out, config.to_json())
    started = time.perf_counter()
    with ProgressDisplay(console, config.run.rounds) as display:
        result = simulate(
            config, base_dir=args.config.resolve().parent, observer=Observers(writer, display)
        )
    summary = writer.finish(
        result, seed=config.run.seed, wall_seconds=time.perf_counter() - started
    )
    console.print(json.dumps(summary, indent=2, sort_keys=True), highlight=False, soft_wrap=True)
    console.print(f"results written to {out}/", highlight=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedhive`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return _simulate(args, console)
    except FedhiveError as exc:
        print(f"fedhive: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedhive: interrupted", file=sys.stderr)
        return 130
