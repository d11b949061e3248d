"""Serving the simulator with uvicorn on a loopback port inside a running event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from services.simulator.app import create_app
from services.simulator.settings import SimulatorSettings

__all__ = ["SimulatorStartError", "serve_simulator"]

STARTUP_TIMEOUT_S = 10.0
_STARTUP_POLL_S = 0.01


class SimulatorStartError(RuntimeError):
    """The simulator server stopped or did not start listening in time."""


@asynccontextmanager
async def serve_simulator(settings: SimulatorSettings, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve a new simulator app and yield its base URL, such as `http://127.0.0.1:41234`.

    Port 0 picks a free port. The socket is bound before uvicorn starts, so the port is known
    without parsing logs. The server stops when the block exits.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    bound_port = listener.getsockname()[1]

    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await _wait_started(server, task, bound_port)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        await task
        listener.close()


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
    # uvicorn offers no start-up event, so poll its `started` flag, bounded by a timeout.
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
    while not server.started:
        if task.done():
            raise SimulatorStartError(f"the simulator server on port {port} stopped during start-up")
        if asyncio.get_running_loop().time() > deadline:
            raise SimulatorStartError(
                f"the simulator server on port {port} did not start within {STARTUP_TIMEOUT_S:.0f} s"
            )
        await asyncio.sleep(_STARTUP_POLL_S)
