"""Shared fixtures: real nats-server processes on free loopback ports with temporary stores."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.embedded import free_port, nats_server_binary


class NatsServer:
    """One nats-server with JetStream, started for a test and removed after it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.monitor = free_port()
        self.store = Path(tempfile.mkdtemp(prefix="turnlog-js-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor),
            "-js", "-sd", str(self.store),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        health = f"http://127.0.0.1:{self.monitor}/healthz?js-enabled-only=true"
        while True:
            try:
                with urllib.request.urlopen(health, timeout=0.5) as response:
                    if response.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nats-server did not become ready within 10 s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


@pytest.fixture(scope="session")
def session_nats() -> Iterator[NatsServer]:
    """A nats-server shared by the tests of one session that need no isolation."""
    server = NatsServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A nats-server of its own for one test, so durable consumers and jobs never leak between tests."""
    server = NatsServer()
    server.start()
    yield server
    server.remove()
