"""What every benchmark row shares: machine details, throwaway NATS servers and condition waits."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path

from services.common.embedded import EmbeddedNats, nats_server_binary
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings

__all__ = ["BenchTimeoutError", "bench_runtime", "machine_info", "nats_server", "scratch_dir", "wait_for"]


class BenchTimeoutError(RuntimeError):
    """A condition a benchmark waits on did not hold in time."""


def machine_info() -> dict[str, str]:
    """Describe the machine and the versions that the figures depend on."""
    return {
        "nproc": str(os.cpu_count() or 0),
        "memory": _memory_total(),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "load average at start": _load_average(),
        "python": platform.python_version(),
        "nats-server": _nats_server_version(),
        "nats-py": _version("nats-py"),
        "litestar": _version("litestar"),
        "msgspec": _version("msgspec"),
        "uvicorn": _version("uvicorn"),
        "langgraph": _version("langgraph"),
        "langgraph-checkpoint-sqlite": _version("langgraph-checkpoint-sqlite"),
    }


def _load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _memory_total() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nats_server_version() -> str:
    try:
        output = subprocess.run(
            [nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return output.strip().removeprefix("nats-server: ") or "unknown"


@asynccontextmanager
async def scratch_dir(prefix: str) -> AsyncIterator[Path]:
    """Yield a temporary folder that is removed afterwards, whatever happens inside."""
    path = Path(tempfile.mkdtemp(prefix=f"turnlog-bench-{prefix}-"))
    try:
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, path, True)


@asynccontextmanager
async def nats_server(directory: Path) -> AsyncIterator[str]:
    """Run a fresh JetStream nats-server on 127.0.0.1 storing under `directory`; yield its URL."""
    server = EmbeddedNats(directory)
    url = await server.start()
    try:
        yield url
    finally:
        await server.stop()


@asynccontextmanager
async def bench_runtime(url: str, name: str) -> AsyncIterator[Runtime]:
    """Open a turnlog runtime (connection, topology, store, buckets) on `url` and close it afterwards."""
    runtime = await open_runtime(Settings(nats_url=url), name=name)
    try:
        yield runtime
    finally:
        await runtime.close()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll `condition` until it holds; raise BenchTimeoutError naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise BenchTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)
