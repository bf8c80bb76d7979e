"""Simulation: many virtual clients on one machine, through the server's own round loop."""

from fedhive.simulation.app import AppContext, AppSpec, SimulationApp
from fedhive.simulation.config import SimulationConfig, load_config, parse_config
from fedhive.simulation.engine import run_simulation, simulate

__all__ = [
    "AppContext",
    "AppSpec",
    "SimulationApp",
    "SimulationConfig",
    "load_config",
    "parse_config",
    "run_simulation",
    "simulate",
]
