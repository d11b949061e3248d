"""Projector against a real nats-server: concurrent instances, rebuilds, dead letters and old event versions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError, NoKeysError

from contracts import topology
from contracts.checkpoint import Checkpoint
from contracts.codec import decode_event
from contracts.events import CheckpointDeleted, JobFailed
from services.common.fold import fold
from services.common.ids import new_job_id
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings
from services.projector.generations import active_generation, checkpoint_bucket, open_bucket
from services.projector.rebuild import rebuild_projection
from services.projector.service import ProjectorService
from tests.projector.helpers import AT, requested, started, turn, wait_for

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
async def runtime(nats_server: Any) -> AsyncIterator[Runtime]:
    opened = await open_runtime(Settings(nats_url=nats_server.url), name="test")
    yield opened
    await opened.close()


async def write_job(runtime: Runtime, job_id: str, turns: int) -> int:
    last = await runtime.store.append(requested(job_id), expected_last=0)
    last = await runtime.store.append(started(job_id), expected_last=last)
    for number in range(1, turns + 1):
        last = await runtime.store.append(turn(job_id, number), expected_last=last)
    return await runtime.store.append(
        JobFailed(job_id=job_id, at=AT, kind="overloaded", message="m", retryable=True, turns=turns),
        expected_last=last,
    )


async def folded(runtime: Runtime, job_id: str) -> bytes | None:
    history = await runtime.store.read(job_id)
    checkpoint = fold([(stored.sequence, stored.event) for stored in history if stored.event is not None])
    return msgspec.json.encode(checkpoint) if checkpoint is not None else None


async def values(bucket: Any) -> dict[str, bytes]:
    try:
        keys = await bucket.keys()
    except NoKeysError:
        return {}
    return {key: (await bucket.get(key)).value for key in keys}


async def caught_up(bucket: Any, expected: dict[str, int]) -> bool:
    for job_id, sequence in expected.items():
        try:
            entry = await bucket.get(job_id)
        except KeyNotFoundError:
            return False
        if msgspec.json.decode(entry.value or b"", type=Checkpoint).last_sequence < sequence:
            return False
    return True


async def test_two_projectors_concurrently_lose_nothing(runtime: Runtime) -> None:
    first = ProjectorService(store=runtime.store, consumer="projector-a")
    second = ProjectorService(store=runtime.store, consumer="projector-b")
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        jobs = [new_job_id() for _ in range(6)]
        lasts = await asyncio.gather(*(write_job(runtime, job_id, 4 + index) for index, job_id in enumerate(jobs)))
        expected = dict(zip(jobs, lasts, strict=True))
        await wait_for(lambda: caught_up(runtime.checkpoints, expected), "both projectors to catch up")
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(*tasks)

    for job_id in jobs:
        assert (await runtime.checkpoints.get(job_id)).value == await folded(runtime, job_id)


async def test_rebuild_after_bucket_deleted_is_identical(runtime: Runtime) -> None:
    projector = ProjectorService(store=runtime.store)
    task = asyncio.create_task(projector.run())
    try:
        jobs = {new_job_id(): turns for turns in (0, 2, 5)}
        expected = {job_id: await write_job(runtime, job_id, turns) for job_id, turns in jobs.items()}
        deleted = new_job_id()
        last = await write_job(runtime, deleted, 1)
        await runtime.store.append(CheckpointDeleted(job_id=deleted, at=AT, reason="test"), expected_last=last)
        await wait_for(lambda: caught_up(runtime.checkpoints, expected), "the live projection")
        await wait_for(lambda: _absent(runtime.checkpoints, deleted), "the deleted job to disappear")
        live = await values(runtime.checkpoints)

        await runtime.js.delete_key_value(topology.CHECKPOINT_BUCKET)
        report = await rebuild_projection(runtime.js)

        assert report.generation == 1
        assert report.previous_generation == 0
        assert report.jobs == 3
        assert report.events == await _stream_messages(runtime)
        active, _ = await active_generation(runtime.js)
        assert active.bucket == "turnlog-checkpoints-1"
        assert active.consumer == "projector-g1"
        assert await values(await checkpoint_bucket(runtime.js)) == live

        # The running projector follows the pointer: an event appended after the switch reaches generation 1.
        job_id = next(iter(jobs))
        await runtime.store.append(turn(job_id, 99), expected_last=expected[job_id])
        rebuilt = await open_bucket(runtime.js, "turnlog-checkpoints-1")
        await wait_for(lambda: _turns(rebuilt, job_id, 99), "the projector to write generation 1")
    finally:
        projector.stop()
        await task
    assert projector.generation is not None
    assert projector.generation.generation == 1


async def test_second_rebuild_retires_old_generation(runtime: Runtime) -> None:
    job_id = new_job_id()
    await write_job(runtime, job_id, 2)
    first = await rebuild_projection(runtime.js)
    second = await rebuild_projection(runtime.js)
    assert (first.generation, second.generation) == (1, 2)
    assert second.jobs == 1
    consumers = {info.name for info in await runtime.js.consumers_info(topology.EVENTS_STREAM)}
    assert "projector-g1" not in consumers
    assert "projector-g2" in consumers
    bucket = await open_bucket(runtime.js, "turnlog-checkpoints-2")
    assert (await bucket.get(job_id)).value == await folded(runtime, job_id)


async def test_undecodable_events_dead_lettered_and_marked(runtime: Runtime) -> None:
    dead: list[Any] = []
    alerts: list[dict[str, Any]] = []

    async def on_dead(msg: Any) -> None:
        dead.append(msg)

    async def on_alert(msg: Any) -> None:
        alerts.append(json.loads(msg.data))

    await runtime.nc.subscribe(topology.DEAD_LETTER_SUBJECT, cb=on_dead)
    await runtime.nc.subscribe(topology.DEAD_LETTER_ALERT_SUBJECT, cb=on_alert)
    job_id = new_job_id()
    last = await runtime.store.append(requested(job_id), expected_last=0)
    last = await runtime.store.append(started(job_id), expected_last=last)
    future = await runtime.js.publish(
        f"turnlog.events.{job_id}.turn", b'{"type":"turn.completed.v9","jobId":"x","at":"y"}'
    )
    corrupt = await runtime.js.publish(f"turnlog.events.{job_id}.turn", b'{"type": "turn.comp')
    last = await runtime.store.append(turn(job_id, 1), expected_last=corrupt.seq)
    failed = JobFailed(job_id=job_id, at=AT, kind="overloaded", message="m", retryable=True, turns=1)
    final = await runtime.store.append(failed, expected_last=last)

    projector = ProjectorService(store=runtime.store, consumer="projector-dl")
    task = asyncio.create_task(projector.run())
    try:
        await wait_for(lambda: caught_up(runtime.checkpoints, {job_id: final}), "the event after the bad ones")
        await wait_for(_has(alerts, 2), "two dead-letter alerts")
    finally:
        projector.stop()
        await task

    checkpoint = msgspec.json.decode((await runtime.checkpoints.get(job_id)).value, type=Checkpoint)
    assert checkpoint.turns == 1
    assert checkpoint.history_error == (
        f"unsupported schema version turn.completed.v9 at sequence {future.seq}; upgrade turnlog to read this job"
    )
    assert checkpoint.can_resume is False
    assert "has an unreadable history (unsupported schema version turn.completed.v9" in checkpoint.can_resume_reason
    assert [item["sequence"] for item in alerts] == [future.seq, corrupt.seq]
    assert [item["errorKind"] for item in alerts] == ["unsupported_version", "corrupt"]
    assert {item["jobId"] for item in alerts} == {job_id}
    assert [msg.headers["Turnlog-Sequence"] for msg in dead] == [str(future.seq), str(corrupt.seq)]


def test_v1_deletion_fixture_upcasts() -> None:
    event = decode_event((FIXTURES / "checkpoint_deleted_v1.json").read_bytes())
    assert event == CheckpointDeleted(job_id="abc123", at=AT, requested_by="api", reason="")


async def test_stored_v1_deletion_removes_checkpoint(runtime: Runtime) -> None:
    job_id = new_job_id()
    last = await write_job(runtime, job_id, 1)
    payload = (FIXTURES / "checkpoint_deleted_v1.json").read_bytes().replace(b"abc123", job_id.encode())
    tombstone = await runtime.js.publish(f"turnlog.events.{job_id}.deleted", payload)
    assert tombstone.seq == last + 1
    report = await rebuild_projection(runtime.js)
    assert report.jobs == 0
    assert await values(await checkpoint_bucket(runtime.js)) == {}


def _has(items: list[Any], count: int) -> Any:
    async def check() -> bool:
        return len(items) >= count

    return check


async def _absent(bucket: Any, job_id: str) -> bool:
    try:
        await bucket.get(job_id)
    except KeyNotFoundError:
        return True
    return False


async def _turns(bucket: Any, job_id: str, turns: int) -> bool:
    try:
        entry = await bucket.get(job_id)
    except KeyNotFoundError:
        return False
    return msgspec.json.decode(entry.value or b"", type=Checkpoint).turns == turns


async def _stream_messages(runtime: Runtime) -> int:
    info = await runtime.js.stream_info(topology.EVENTS_STREAM)
    return int(info.state.messages)
