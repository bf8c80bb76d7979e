"""``fedhive simulate CONFIG.toml``: a federation of virtual clients on this machine."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from fedhive.cli.progress import ProgressDisplay
from fedhive.config import load_config
from fedhive.server.run import Observers
from fedhive.simulation.engine import simulate
from fedhive.simulation.output import RunWriter


def add_parser(commands: Any) -> None:
    """Register the ``simulate`` subcommand."""
    sim = commands.add_parser("simulate", help="run a federation of virtual clients")
    sim.add_argument("config", type=Path, help="the run's TOML config")
    sim.add_argument("--out", type=Path, default=None, help="output folder (default runs/NAME)")
    sim.add_argument("--seed", type=int, default=None, help="override run.seed")
    sim.add_argument("--backend", choices=["local", "process", "ray"], default=None)
    sim.set_defaults(handler=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run the simulation, show progress, write the run's files, print the summary."""
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
    if result.stop_reason:
        console.print(f"[bold yellow]run stopped early:[/] {result.stop_reason}", highlight=False)
    console.print(f"results written to {out}/", highlight=False)
    return 0
