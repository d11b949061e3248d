"""The projector against a real nats-server: checkpoints equal the fold of the history, replays change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from nats.js.errors import NoKeysError

from contracts.checkpoint import Checkpoint
from contracts.events import JobFailed, JobRequested, JobStarted, TurnCompleted, Usage
from services.common.fold import fold
from services.common.ids import new_job_id
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings
from services.projector.projection import OutOfOrderError, apply_event, fold_stored_history
from services.projector.service import ProjectorService

AT = "2026-01-15T10:30:45.000Z"


@pytest.fixture
async def runtime(nats_server: Any) -> AsyncIterator[Runtime]:
    opened = await open_runtime(Settings(nats_url=nats_server.url), name="test")
    yield opened
    await opened.close()


async def write_job(runtime: Runtime, job_id: str, turns: int) -> None:
    last = await runtime.store.append(
        JobRequested(job_id=job_id, at=AT, repository="o/r", task="t", max_turns=10), expected_last=0
    )
    last = await runtime.store.append(
        JobStarted(job_id=job_id, at=AT, runner_id="r", base_commit="c"), expected_last=last
    )
    for number in range(1, turns + 1):
        record = TurnCompleted(
            job_id=job_id,
            at=AT,
            turn=number,
            assistant_content=msgspec.Raw(b"[]"),
            tool_results=[],
            stop_reason="tool_use",
            model="m",
            usage=Usage(input_tokens=7, output_tokens=3),
            model_ms=1,
            tools_ms=1,
        )
        last = await runtime.store.append(record, expected_last=last)
    await runtime.store.append(
        JobFailed(job_id=job_id, at=AT, kind="overloaded", message="m", retryable=True), expected_last=last
    )


async def project_until_idle(runtime: Runtime, consumer: str, expected: dict[str, int]) -> None:
    projector = ProjectorService(store=runtime.store, consumer=consumer)
    task = asyncio.create_task(projector.run())
    try:
        async with asyncio.timeout(20):
            while True:
                done = True
                for job_id, sequence in expected.items():
                    try:
                        entry = await runtime.checkpoints.get(job_id)
                    except Exception:
                        done = False
                        break
                    if msgspec.json.decode(entry.value or b"", type=Checkpoint).last_sequence < sequence:
                        done = False
                if done:
                    return
                await asyncio.sleep(0.05)
    finally:
        projector.stop()
        await task


async def test_checkpoints_equal_fold_and_replay_is_idempotent(runtime: Runtime) -> None:
    jobs = {new_job_id(): turns for turns in (0, 3, 7)}
    for job_id, turns in jobs.items():
        await write_job(runtime, job_id, turns)
    expected = {job_id: await runtime.store.last_sequence(job_id) for job_id in jobs}

    await project_until_idle(runtime, "projector-a", expected)
    live = {job_id: (await runtime.checkpoints.get(job_id)).value for job_id in jobs}
    for job_id, turns in jobs.items():
        history = await runtime.store.read(job_id)
        folded = fold([(stored.sequence, stored.event) for stored in history if stored.event is not None])
        assert live[job_id] == msgspec.json.encode(folded)
        assert msgspec.json.decode(live[job_id], type=Checkpoint).turns == turns

    # A second consumer replays every event from sequence 1 onto the same bucket: nothing changes.
    revisions = {job_id: (await runtime.checkpoints.get(job_id)).revision for job_id in jobs}
    await project_until_idle(runtime, "projector-b", expected)
    await asyncio.sleep(0.3)
    for job_id in jobs:
        entry = await runtime.checkpoints.get(job_id)
        assert entry.value == live[job_id]
        assert entry.revision == revisions[job_id]


async def test_overtaking_event_folds_stored_history(runtime: Runtime) -> None:
    job_id = new_job_id()
    await write_job(runtime, job_id, turns=3)
    history = await runtime.store.read(job_id)
    request, *_, third_turn, failure = history
    bucket = runtime.checkpoints
    await apply_event(bucket, request.event, request.sequence)  # type: ignore[arg-type]

    # The failure arrives while only the request is applied, as when another projector is still applying turns 1 to 3.
    with pytest.raises(OutOfOrderError):
        await apply_event(bucket, failure.event, failure.sequence, previous=third_turn.sequence)  # type: ignore[arg-type]
    assert await fold_stored_history(bucket, runtime.store, job_id, failure.sequence, third_turn.sequence)

    entry = await bucket.get(job_id)
    expected = fold([(item.sequence, item.event) for item in history if item.event is not None])
    assert msgspec.json.decode(entry.value or b"", type=Checkpoint) == expected

    # The overtaken turns arrive afterwards and change nothing.
    for item in history[1:-1]:
        await apply_event(bucket, item.event, item.sequence)  # type: ignore[arg-type]
    assert (await bucket.get(job_id)).value == entry.value


async def test_fold_waits_for_missing_predecessor(runtime: Runtime) -> None:
    job_id = new_job_id()
    await write_job(runtime, job_id, turns=1)
    last = (await runtime.store.read(job_id))[-1]

    # A read that lacks the predecessor (a lagging follower) writes nothing, so the event is retried.
    assert not await fold_stored_history(runtime.checkpoints, runtime.store, job_id, last.sequence, last.sequence + 7)
    assert job_id not in await _keys(runtime)


async def _keys(runtime: Runtime) -> list[str]:
    try:
        return list(await runtime.checkpoints.keys())
    except NoKeysError:
        return []
