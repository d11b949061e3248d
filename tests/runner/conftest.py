"""A runner over a real nats-server and an in-process model simulator, driven job by job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.events import Event, JobRequested
from services.common.clock import now_iso
from services.common.ids import new_job_id
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings
from services.common.store import EventStore
from services.demo.sample import create_sample_repository
from services.runner.model import ModelClient
from services.runner.service import RunnerService
from services.simulator import SimulatorSettings, serve_simulator

REPOSITORY = "my-org/my-repo"
TASK = "Add comprehensive error handling to the API"


@dataclass
class Harness:
    """One test's NATS runtime, simulator and settings, with helpers to create and run jobs."""

    runtime: Runtime
    settings: Settings
    simulator_url: str
    clients: list[ModelClient] = field(default_factory=list)

    def runner(self, *, store: EventStore | None = None, **overrides: Any) -> RunnerService:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        client = ModelClient(api_key="simulator", base_url=self.simulator_url, timeout=30)
        self.clients.append(client)
        return RunnerService(store=store or self.runtime.store, model=client, settings=settings)

    async def create_job(self, *, max_turns: int = 10, repository: str = REPOSITORY) -> str:
        job_id = new_job_id()
        request = JobRequested(job_id=job_id, at=now_iso(), repository=repository, task=TASK, max_turns=max_turns)
        await self.runtime.store.append(request, expected_last=0)
        return job_id

    async def run(self, job_id: str, **overrides: Any) -> str:
        return await self.runner(**overrides).run_once(job_id)

    async def events(self, job_id: str) -> list[Event]:
        return [stored.event for stored in await self.runtime.store.read(job_id) if stored.event is not None]

    async def types(self, job_id: str) -> list[str]:
        return [type(event).__name__ for event in await self.events(job_id)]

    async def sim_requests(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{self.simulator_url}/_sim/requests")
        body: list[dict[str, Any]] = response.json()
        return body


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll `condition` until it holds, failing with `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def make_harness(nats_server: Any, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """Build a harness with a simulator configured by `faults` and `latency_ms`, settings by keyword."""
    repos = tmp_path / "repos"
    create_sample_repository(repos)
    async with AsyncExitStack() as stack:
        harnesses: list[Harness] = []

        async def build(*, faults: str = "", latency_ms: float = 0.0, **overrides: Any) -> Harness:
            simulator = SimulatorSettings(faults=faults, latency_ms=latency_ms)
            url = await stack.enter_async_context(serve_simulator(simulator))
            values: dict[str, Any] = {
                "nats_url": nats_server.url,
                "data_dir": tmp_path / "data",
                "repos_dir": repos,
                "lease_seconds": 2.0,
                **overrides,
            }
            settings = Settings(**values)
            runtime = await open_runtime(settings, name="runner-test")
            stack.push_async_callback(runtime.close)
            harness = Harness(runtime=runtime, settings=settings, simulator_url=url)
            harnesses.append(harness)
            return harness

        try:
            yield build
        finally:
            for harness in harnesses:
                for client in harness.clients:
                    await client.close()
