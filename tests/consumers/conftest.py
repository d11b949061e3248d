"""Fixtures of the consumer tests: a runtime on a fresh nats-server, a job writer and a loopback HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import pytest

from contracts.events import Event, JobFailed, JobRequested, JobStarted, TurnCompleted, Usage
from services.common.clock import to_iso
from services.common.ids import new_job_id
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings
from services.projector.service import apply_event


@pytest.fixture
async def runtime(nats_server: Any) -> AsyncIterator[Runtime]:
    opened = await open_runtime(Settings(nats_url=nats_server.url), name="consumer-test")
    yield opened
    await opened.close()


class JobWriter:
    """Appends job histories straight to the store, and projects them into the checkpoint bucket."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def append(self, event: Event) -> int:
        last = await self.runtime.store.last_sequence(event.job_id)
        sequence = await self.runtime.store.append(event, expected_last=last)
        await apply_event(self.runtime.checkpoints, event, sequence)
        return sequence

    async def job(
        self,
        at: datetime,
        *,
        turns: int = 2,
        max_turns: int = 10,
        callback_url: str | None = None,
        job_id: str | None = None,
        resume_of: str | None = None,
    ) -> str:
        job_id = job_id or new_job_id()
        stamp = to_iso(at)
        await self.append(
            JobRequested(
                job_id=job_id,
                at=stamp,
                repository="my-org/my-repo",
                task="Add error handling",
                max_turns=max_turns,
                callback_url=callback_url,
                resume_of=resume_of,
                from_turn=0 if resume_of else None,
            )
        )
        await self.append(JobStarted(job_id=job_id, at=stamp, runner_id="runner-1", base_commit="abc"))
        for number in range(1, turns + 1):
            await self.append(
                TurnCompleted(
                    job_id=job_id,
                    at=stamp,
                    turn=number,
                    assistant_content=msgspec.Raw(b'[{"type":"text","text":"working"}]'),
                    tool_results=[],
                    stop_reason="tool_use",
                    model="claude",
                    usage=Usage(input_tokens=10, output_tokens=5),
                    model_ms=1.0,
                    tools_ms=1.0,
                )
            )
        return job_id

    async def fail(
        self,
        job_id: str,
        at: datetime,
        *,
        kind: str = "rate_limited",
        retryable: bool = True,
        retry_at: str | None = None,
    ) -> int:
        return await self.append(
            JobFailed(
                job_id=job_id,
                at=to_iso(at),
                kind=kind,
                message=f"{kind} from the model API",
                retryable=retryable,
                retry_not_before=retry_at,
                turns=2,
            )
        )

    async def types(self, job_id: str) -> list[str]:
        return [str(type(stored.event).__struct_config__.tag) for stored in await self.runtime.store.read(job_id)]


@pytest.fixture
def jobs(runtime: Runtime) -> JobWriter:
    return JobWriter(runtime)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A loopback HTTP server responding to each request with the next scripted status (None: no response)."""

    script: list[int | None]
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=abc"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Received(headers, body))
        index = len(self.requests) - 1
        status = self.script[index] if index < len(self.script) else 200
        if status is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), timeout=30)
            writer.close()
            return
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.extra_headers.items())
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    servers: list[asyncio.Server] = []
    receivers: list[Receiver] = []

    async def start(script: list[int | None], **extra_headers: str) -> Receiver:
        made = Receiver(script=script, extra_headers=extra_headers)
        server = await asyncio.start_server(made.handle, "127.0.0.1", 0)
        made.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        receivers.append(made)
        return made

    yield start
    for made in receivers:
        made.release.set()
    for server in servers:
        server.close()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@pytest.fixture
def until() -> Callable[..., Awaitable[None]]:
    return wait_until
