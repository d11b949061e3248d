"""kill -9 of the projector process mid-stream: after a restart every checkpoint equals the fold of its history."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import topology
from services.common.fold import fold
from services.common.ids import new_job_id
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings
from tests.projector.helpers import requested, started, turn

TURNLOG = str(Path(sys.executable).parent / "turnlog")


@pytest.fixture
async def runtime(nats_server: Any) -> AsyncIterator[Runtime]:
    opened = await open_runtime(Settings(nats_url=nats_server.url), name="test")
    yield opened
    await opened.close()


def serve_projector(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TURNLOG_NATS_URL": url}
    return subprocess.Popen(
        [TURNLOG, "serve", "projector"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def acknowledged(runtime: Runtime) -> tuple[int, int]:
    info = await runtime.js.consumer_info(topology.EVENTS_STREAM, topology.PROJECTOR_CONSUMER)
    return int(info.ack_floor.stream_seq or 0), int(info.num_pending or 0) + int(info.num_ack_pending or 0)


async def test_killed_projector_resumes_exactly(runtime: Runtime, nats_server: Any) -> None:
    jobs = [new_job_id() for _ in range(40)]
    for job_id in jobs:
        last = await runtime.store.append(requested(job_id), expected_last=0)
        last = await runtime.store.append(started(job_id), expected_last=last)
        for number in range(1, 16):
            last = await runtime.store.append(turn(job_id, number), expected_last=last)
    total = await runtime.store.last_sequence(jobs[-1])

    projector = await asyncio.to_thread(serve_projector, nats_server.url)
    try:
        async with asyncio.timeout(60):
            while True:
                try:
                    floor, _ = await acknowledged(runtime)
                except Exception:
                    floor = 0
                if floor >= 50:
                    break
                await asyncio.sleep(0.01)
        projector.send_signal(signal.SIGKILL)
        await asyncio.to_thread(projector.wait, 10)
        floor, left = await acknowledged(runtime)
        assert floor < total, "the projector finished before it could be killed mid-stream"
        assert left > 0

        projector = await asyncio.to_thread(serve_projector, nats_server.url)
        async with asyncio.timeout(60):
            while (await acknowledged(runtime))[1] > 0:
                await asyncio.sleep(0.1)
    finally:
        projector.terminate()
        await asyncio.to_thread(projector.wait, 15)

    for job_id in jobs:
        history = await runtime.store.read(job_id)
        expected = fold([(stored.sequence, stored.event) for stored in history if stored.event is not None])
        entry = await runtime.checkpoints.get(job_id)
        assert entry.value == msgspec.json.encode(expected), job_id
