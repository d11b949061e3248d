"""Running turnlog's services in one process: `turnlog up` runs them all, `turnlog serve` runs one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from services.alerts.settings import AlertSettings
from services.api.app import create_app
from services.cli.client import CliError
from services.cli.ops import start_operations
from services.common.embedded import EmbeddedNats, free_port
from services.common.runtime import Runtime, open_runtime
from services.common.settings import ModelSettings, Settings
from services.projector.service import ProjectorService
from services.runner.model import ModelClient
from services.runner.service import RunnerService
from services.simulator.settings import SimulatorSettings

__all__ = ["SERVICES", "StackOptions", "run_stack"]

log = logging.getLogger(__name__)

from services.cli.main import SERVICES  # noqa: E402

HTTP_SERVICES = frozenset({"gateway", "api"})


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the stack, which stops every service together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@dataclass(slots=True)
class StackOptions:
    """What to run and where: `services` empty means every service (`turnlog up`)."""

    port: int = 3000
    data_dir: Path = Path(".turnlog")
    nats_url: str | None = None
    services: tuple[str, ...] = ()
    announce: Callable[[str], None] = print
    ready: asyncio.Event = field(default_factory=asyncio.Event)


async def run_stack(options: StackOptions, stop: asyncio.Event | None = None) -> None:
    """Start the requested services, wait for SIGINT/SIGTERM (or `stop`), then stop them in order."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    wanted = set(options.services or SERVICES)
    # Fail on a bad setting or a busy port before anything starts, rather than after NATS is up.
    _validate_settings(options, wanted)
    if wanted & HTTP_SERVICES:
        _check_port_free(os.environ.get("TURNLOG_HOST", "127.0.0.1"), options.port)
    cleanups: list[Callable[[], Awaitable[None]]] = []
    tasks: list[asyncio.Task[Any]] = []
    cleanup_timeout = 10.0
    try:
        nats_url = options.nats_url
        if nats_url is None:
            embedded = EmbeddedNats(options.data_dir)
            nats_url = await embedded.start()
            cleanups.append(embedded.stop)
            options.announce(f"Embedded NATS with JetStream at {nats_url}, storing in {options.data_dir / 'nats'}")

        base_env: dict[str, Any] = {"nats_url": nats_url, "data_dir": options.data_dir}
        settings = Settings(**base_env)
        # The runner's stop may spend up to shutdown_grace seconds letting in-flight turns be recorded.
        cleanup_timeout = max(cleanup_timeout, settings.shutdown_grace + 5)
        runtime = await _unless_stopped(open_runtime(settings, name="turnlog"), stop, nats_url)
        if runtime is None:
            return
        cleanups.append(runtime.close)

        if "runner" in wanted:
            model, model_cleanup = await _model_client(settings, options, tasks)
            cleanups.append(model_cleanup)
            runner = RunnerService(store=runtime.store, model=model, settings=settings)
            runner_task = asyncio.create_task(runner.run(), name="runner")
            tasks.append(runner_task)
            cleanups.append(_then_cancel(runner.stop, runner_task))
        if "projector" in wanted:
            projector = ProjectorService(store=runtime.store)
            projector_task = asyncio.create_task(projector.run(), name="projector")
            tasks.append(projector_task)
            cleanups.append(_then_cancel(_later(projector.stop), projector_task))
        await start_operations(wanted, runtime, settings, options.announce, tasks, cleanups)
        http = wanted & HTTP_SERVICES
        if http:
            server = await _serve_http(settings, runtime, options.port, http, tasks)
            host = os.environ.get("TURNLOG_HOST", "127.0.0.1")
            shown = "localhost" if host in ("127.0.0.1", "localhost") else host
            options.announce(f"turnlog API and webhook listening on http://{shown}:{options.port}")
            cleanups.append(_stopper(server))

        options.ready.set()
        stack_name = f"turnlog {', '.join(options.services)}" if options.services else "turnlog"
        options.announce(f"{stack_name} is up. Press Ctrl+C to stop.")
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        options.announce("Stopping turnlog...")
        for cleanup in reversed(cleanups):
            started = loop.time()
            try:
                await asyncio.wait_for(cleanup(), timeout=cleanup_timeout)
            except Exception:
                log.exception("error while stopping")
            log.debug("stopped %s in %.2fs", getattr(cleanup, "__qualname__", cleanup), loop.time() - started)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        options.announce("turnlog stopped.")


async def _model_client(
    settings: Settings, options: StackOptions, tasks: list[asyncio.Task[Any]]
) -> tuple[ModelClient, Callable[[], Awaitable[None]]]:
    model_settings = ModelSettings()
    if model_settings.anthropic_api_key is not None:
        client = ModelClient(
            api_key=model_settings.anthropic_api_key.get_secret_value(),
            base_url=model_settings.anthropic_base_url,
            timeout=settings.model_timeout,
        )
        options.announce(f"Model: Anthropic Messages API, model {settings.model}")
        return client, client.close

    from services.simulator.app import create_app as create_simulator
    from services.simulator.settings import SimulatorSettings

    port = free_port()
    simulator = _QuietServer(
        uvicorn.Config(create_simulator(SimulatorSettings()), host="127.0.0.1", port=port, log_level="warning")
    )
    tasks.append(asyncio.create_task(simulator.serve(), name="simulator"))
    while not simulator.started:
        await asyncio.sleep(0.02)
    base_url = f"http://127.0.0.1:{port}"
    options.announce(f"No ANTHROPIC_API_KEY: using the built-in model simulator at {base_url}")
    client = ModelClient(api_key="simulator", base_url=base_url, timeout=settings.model_timeout)

    async def close() -> None:
        await client.close()
        simulator.should_exit = True

    return client, close


async def _serve_http(
    settings: Settings, runtime: Runtime, port: int, services: set[str], tasks: list[asyncio.Task[Any]]
) -> uvicorn.Server:
    app = create_app(settings, runtime=runtime, api="api" in services, gateway="gateway" in services)
    host = os.environ.get("TURNLOG_HOST", "127.0.0.1")
    server = _QuietServer(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    tasks.append(asyncio.create_task(server.serve(), name="http"))
    while not server.started:
        if tasks[-1].done():
            tasks[-1].result()
            raise RuntimeError(f"the HTTP server could not start on port {port}")
        await asyncio.sleep(0.02)
    return server


async def _unless_stopped(opening: Awaitable[Runtime], stop: asyncio.Event, nats_url: str) -> Runtime | None:
    """Connect to NATS unless a stop signal comes first, so an unreachable server never blocks Ctrl+C."""
    connecting = asyncio.ensure_future(opening)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([connecting, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()
    log.warning("stopped while connecting to NATS at %s", nats_url)
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await connecting
    return None


def _later(action: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        action()

    return run


def _then_cancel(stop: Callable[[], Awaitable[None]], task: asyncio.Task[Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    return run


def _stopper(server: uvicorn.Server) -> Callable[[], Awaitable[None]]:
    async def stop() -> None:
        server.should_exit = True

    return stop


def _validate_settings(options: StackOptions, wanted: set[str]) -> None:
    """Read every settings class the wanted services use; an invalid variable raises pydantic's error."""
    Settings(data_dir=options.data_dir)
    if "runner" in wanted:
        ModelSettings()
        SimulatorSettings()
    if "alerts" in wanted:
        AlertSettings()


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The same option uvicorn sets, so a port in TIME_WAIT after a restart still counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another port with --port") from exc
