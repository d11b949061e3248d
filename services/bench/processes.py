"""turnlog services started as their own processes (`turnlog serve ...`), as a deployment runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from services.bench.harness import wait_for

__all__ = ["ServiceProcess", "service_environment"]

TURNLOG = str(Path(sys.executable).parent / "turnlog")


def service_environment(**settings: str) -> dict[str, str]:
    """Return this process's environment without TURNLOG_ and ANTHROPIC_ variables, plus `settings`."""
    kept = {key: value for key, value in os.environ.items() if not key.startswith(("TURNLOG_", "ANTHROPIC_"))}
    return {**kept, "TURNLOG_LOG_LEVEL": "INFO", **settings}


class ServiceProcess:
    """One service process, by default `turnlog serve SERVICE`; its output goes to a log file."""

    def __init__(
        self,
        service: str,
        env: dict[str, str],
        log_path: Path,
        *,
        port: int | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.service = service
        self.log_path = log_path
        if command is None:
            command = [TURNLOG, "serve", service] + (["--port", str(port)] if port else [])
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file)

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.process.pid

    def output(self) -> str:
        """Return everything the process has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_logged(self, text: str, *, timeout: float = 30) -> None:
        """Wait until the process logs `text`; fail early if it exits."""

        async def logged() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.service} exited early:\n{self.output()[-2000:]}")
            return text in self.output()

        await wait_for(logged, timeout=timeout, what=f"{self.service} to log {text!r}", interval=0.05)

    def kill(self) -> None:
        """Send SIGKILL, as a crash would, and reap the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    async def stop(self) -> None:
        """Send SIGTERM and wait; SIGKILL after 15 s."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 5)
