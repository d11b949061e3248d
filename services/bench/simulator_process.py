"""The model simulator as a process of its own: `python -m services.bench.simulator_process --port P`.

Row 9 needs the simulator outside the runner process, so that the runner's RSS and CPU are its own.
Settings come from `TURNLOG_SIM_*` variables, such as TURNLOG_SIM_LATENCY_MS.
"""

from __future__ import annotations

import argparse

import uvicorn

from services.simulator.app import create_app
from services.simulator.settings import SimulatorSettings


def main() -> None:
    """Serve the simulator on 127.0.0.1 until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m services.bench.simulator_process", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1.")
    options = parser.parse_args()
    app = create_app(SimulatorSettings())
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning", lifespan="off", backlog=4096)


if __name__ == "__main__":
    main()
