"""Model simulator: an Anthropic Messages API look-alike that plays a scripted coding agent offline."""

from services.simulator.app import create_app
from services.simulator.faults import FaultSpec, FaultSpecError, parse_fault_specs
from services.simulator.server import serve_simulator
from services.simulator.settings import SimulatorSettings

__all__ = [
    "FaultSpec",
    "FaultSpecError",
    "SimulatorSettings",
    "create_app",
    "parse_fault_specs",
    "serve_simulator",
]
