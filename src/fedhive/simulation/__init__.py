"""Simulation: many virtual clients on one machine, through the server's own round loop."""

from fedhive.core.ids import VirtualClientIds
from fedhive.simulation.app import AppContext, AppSpec, SimulationApp
from fedhive.simulation.engine import run_simulation, simulate
from fedhive.simulation.states import MemoryStateStore, SqliteStateStore, StateStore

__all__ = [
    "AppContext",
    "AppSpec",
    "MemoryStateStore",
    "SimulationApp",
    "SqliteStateStore",
    "StateStore",
    "VirtualClientIds",
    "run_simulation",
    "simulate",
]
