"""A whole turnlog stack as a user runs it: `turnlog up` in its own process, driven over HTTP and the CLI."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.embedded import free_port
from services.demo.sample import create_sample_repository

TURNLOG = str(Path(sys.executable).parent / "turnlog")


class Stack:
    """A running `turnlog up` process with its output captured line by line."""

    def __init__(self, workdir: Path, env: dict[str, str], nats_url: str | None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = {**env, "TURNLOG_API_URL": f"http://127.0.0.1:{self.port}"}
        self.nats_url = nats_url
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [TURNLOG, "up", "--port", str(self.port), "--data-dir", str(self.workdir / "data")]
        if self.nats_url:
            command += ["--nats-url", self.nats_url]
        self.lines = []
        self.process = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._collect, daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("turnlog up did not become ready:\n" + "\n".join(self.lines))
            time.sleep(0.1)

    def _collect(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def simulator_url(self) -> str:
        for line in self.lines:
            found = re.search(r"model simulator at (http://\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError("the stack did not announce its simulator:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGINT) -> float:
        """Stop the stack with `sig` and return how many seconds it took to exit."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - started

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TURNLOG, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=10, **kwargs)

    def wait_for_status(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/jobs/{job_id}")
            if response.status_code == 200 and response.json()["status"] in statuses:
                body: dict[str, Any] = response.json()
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not reach {statuses}: {response.text}")
            time.sleep(0.1)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Build stacks over a sample repository `my-org/my-repo`; every stack is stopped after the test."""
    repos = tmp_path / "repos"
    create_sample_repository(repos)
    stacks: list[Stack] = []

    def build(nats_url: str | None = None, **extra_env: str) -> Stack:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("TURNLOG_", "ANTHROPIC_"))}
        env.update({"TURNLOG_REPOS_DIR": str(repos), "TURNLOG_LOG_LEVEL": "INFO", **extra_env})
        stack = Stack(tmp_path, env, nats_url)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop()


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="turnlog-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
