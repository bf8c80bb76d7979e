"""Simulation: many virtual clients on one machine, through the server's own round loop."""

from fedhive.simulation.app import AppContext, AppSpec, SimulationApp
from fedhive.simulation.engine import run_simulation, simulate

__all__ = [
    "AppContext",
    "AppSpec",
    "SimulationApp",
    "run_simulation",
    "simulate",
]
