"""turnlog services and the model simulator served inside the benchmark's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn

from services.common.embedded import free_port
from services.simulator.app import create_app as create_simulator
from services.simulator.settings import SimulatorSettings

__all__ = ["Arrival", "ArrivalClock", "serve_asgi", "serve_timed_simulator"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class Arrival:
    """One model request as the simulator received it: when its body was complete and its size."""

    __slots__ = ("at", "size")

    def __init__(self, at: float, size: int) -> None:
        self.at = at
        self.size = size


class ArrivalClock:
    """ASGI wrapper that notes the `time.perf_counter()` at which each `POST /v1/messages` body is complete."""

    def __init__(self, app: Any) -> None:
        self._app: Asgi = app
        self.arrivals: asyncio.Queue[Arrival] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/v1/messages":
            await self._app(scope, receive, send)
            return
        size = 0

        async def timed_receive() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    self.arrivals.put_nowait(Arrival(time.perf_counter(), size))
            return message

        await self._app(scope, timed_receive, send)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT to the benchmark, which then stops every server it started."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port; yield its base URL and stop it afterwards."""
    port = free_port()
    server = _QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 15
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"uvicorn stopped while starting on port {port}")
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port} within 15 s")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


@asynccontextmanager
async def serve_timed_simulator(settings: SimulatorSettings) -> AsyncIterator[tuple[str, ArrivalClock]]:
    """Serve the model simulator behind an ArrivalClock; yield its URL and the clock."""
    clock = ArrivalClock(create_simulator(settings))
    async with serve_asgi(clock, lifespan="off") as url:
        yield url, clock
