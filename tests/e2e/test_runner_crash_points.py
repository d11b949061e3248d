"""kill -9 of runner processes at four points inside a turn: every job still completes exactly once.

Each crashing runner is a `turnlog serve runner` process with the `TURNLOG_RUNNER_CRASH_AT` test hook
and room for one job, so each of the four jobs lands on a different crashing runner. A runner in the
test process takes every job over once its lease (2 s) has expired, and one more job runs uninterrupted
as the reference for the final repository change.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from contracts import topology
from contracts.events import JobCompleted, JobRequested, JobStarted, TurnCompleted
from services.api.app import create_app
from services.common.clock import now_iso
from services.common.embedded import free_port
from services.common.ids import new_job_id
from services.common.runtime import open_runtime
from services.common.settings import Settings
from services.demo.sample import create_sample_repository
from services.runner.model import ModelClient
from services.runner.service import RunnerService
from services.simulator import SimulatorSettings, serve_simulator

TURNLOG = str(Path(sys.executable).parent / "turnlog")
CRASH_POINTS = ["before_model:5", "after_model:6", "after_tool:5", "after_append:6"]


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_kill_at_turn_points_completes(nats_server: Any, tmp_path: Path) -> None:
    repos = tmp_path / "repos"
    create_sample_repository(repos)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TURNLOG_", "ANTHROPIC_"))}
    env.update(
        TURNLOG_NATS_URL=nats_server.url,
        TURNLOG_REPOS_DIR=str(repos),
        TURNLOG_LEASE_SECONDS="2",
        TURNLOG_RUNNER_CONCURRENCY="1",
    )
    settings = Settings(nats_url=nats_server.url, data_dir=tmp_path / "data", repos_dir=repos, lease_seconds=2.0)
    runtime = await open_runtime(settings, name="crash-test")
    crashers = [
        subprocess.Popen(
            [TURNLOG, "serve", "runner"],
            env={**env, "TURNLOG_RUNNER_CRASH_AT": point, "TURNLOG_DATA_DIR": str(tmp_path / f"crasher-{index}")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index, point in enumerate(CRASH_POINTS)
    ]
    port = free_port()
    api = uvicorn.Server(uvicorn.Config(create_app(settings, runtime=runtime), port=port, log_level="warning"))
    api_task = asyncio.create_task(api.serve())
    try:

        async def all_waiting() -> bool:
            try:
                info = await runtime.js.consumer_info(topology.EVENTS_STREAM, topology.RUNNER_CONSUMER)
            except Exception:
                return False
            return int(info.num_waiting or 0) >= len(CRASH_POINTS)

        await wait_until(all_waiting, 60, "every crashing runner to wait for work")
        jobs = []
        for _ in CRASH_POINTS:
            job_id = new_job_id()
            request = JobRequested(
                job_id=job_id, at=now_iso(), repository="my-org/my-repo", task="Add error handling", max_turns=10
            )
            await runtime.store.append(request, expected_last=0)
            jobs.append(job_id)

        async def all_crashed() -> bool:
            return all(process.poll() is not None for process in crashers)

        await wait_until(all_crashed, 60, "every runner to kill itself at its crash point")
        assert [process.returncode for process in crashers] == [-9] * len(CRASH_POINTS)

        reference = new_job_id()
        request = JobRequested(
            job_id=reference, at=now_iso(), repository="my-org/my-repo", task="Add error handling", max_turns=10
        )
        async with serve_simulator(SimulatorSettings()) as simulator_url:
            client = ModelClient(api_key="simulator", base_url=simulator_url, timeout=30)
            rescuer = RunnerService(store=runtime.store, model=client, settings=settings)
            rescuer_task = asyncio.create_task(rescuer.run())
            await runtime.store.append(request, expected_last=0)
            try:

                async def all_completed() -> bool:
                    for job_id in [*jobs, reference]:
                        events = await runtime.store.read(job_id)
                        if not isinstance(events[-1].event, JobCompleted):
                            return False
                    return True

                await wait_until(all_completed, 90, "every job to complete")
            finally:
                await rescuer.stop()
                rescuer_task.cancel()
                await asyncio.gather(rescuer_task, return_exceptions=True)
                await client.close()

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            expected_diff = (await http.get(f"/jobs/{reference}/diff")).text
            assert "+++ b/api/errors.py" in expected_diff
            assert "+from .errors import handle_errors" in expected_diff
            for job_id, point in zip(jobs, CRASH_POINTS, strict=True):
                events = [stored.event for stored in await runtime.store.read(job_id)]
                turns = [event.turn for event in events if isinstance(event, TurnCompleted)]
                assert turns == list(range(1, 9)), point
                starts = [event for event in events if isinstance(event, JobStarted)]
                assert [start.attempt for start in starts] == [1, 2], point
                assert starts[1].runner_id == rescuer.runner_id, point
                assert [type(event).__name__ for event in events].count("JobCompleted") == 1, point
                diff = (await http.get(f"/jobs/{job_id}/diff")).text
                assert diff == expected_diff, point
    finally:
        for process in crashers:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        api.should_exit = True
        await asyncio.wait_for(api_task, 10)
        await runtime.close()
