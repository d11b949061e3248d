"""The event store against a real nats-server: ordered reads, single-writer appends, atomic batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.events import JobCompleted, JobRequested, JobResumed, JobStarted
from services.common.ids import new_job_id
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings
from services.common.store import AppendConflictError

AT = "2026-01-15T10:30:45.000Z"


@pytest.fixture
async def runtime(session_nats: Any) -> AsyncIterator[Runtime]:
    opened = await open_runtime(Settings(nats_url=session_nats.url), name="test")
    yield opened
    await opened.close()


def requested(job_id: str) -> JobRequested:
    return JobRequested(job_id=job_id, at=AT, repository="o/r", task="t", max_turns=10)


async def test_append_and_read_in_order(runtime: Runtime) -> None:
    job_id, other = new_job_id(), new_job_id()
    store = runtime.store
    first = await store.append(requested(job_id), expected_last=0)
    await store.append(requested(other), expected_last=0)
    second = await store.append(JobStarted(job_id=job_id, at=AT, runner_id="r1", base_commit="c"), expected_last=first)
    third = await store.append(JobCompleted(job_id=job_id, at=AT, summary="s", turns=1), expected_last=second)

    events = await store.read(job_id)
    assert [stored.sequence for stored in events] == [first, second, third]
    assert [type(stored.event).__name__ for stored in events] == ["JobRequested", "JobStarted", "JobCompleted"]
    assert await store.last_sequence(job_id) == third
    assert [stored.sequence for stored in await store.read(job_id, after=first)] == [second, third]
    assert [stored.sequence for stored in await store.read(job_id, limit=1)] == [first]


async def test_read_pages_past_one_batch(runtime: Runtime) -> None:
    job_id = new_job_id()
    last = await runtime.store.append(requested(job_id), expected_last=0)
    for _ in range(600):
        last = await runtime.store.append(
            JobStarted(job_id=job_id, at=AT, runner_id="r", base_commit="c"), expected_last=last
        )
    events = await runtime.store.read(job_id)
    assert len(events) == 601
    assert events[-1].sequence == last
    sequences = [stored.sequence for stored in events]
    assert sequences == sorted(sequences)


async def test_stale_writer_is_rejected(runtime: Runtime) -> None:
    job_id = new_job_id()
    first = await runtime.store.append(requested(job_id), expected_last=0)
    await runtime.store.append(JobStarted(job_id=job_id, at=AT, runner_id="a", base_commit="c"), expected_last=first)

    with pytest.raises(AppendConflictError) as caught:
        await runtime.store.append(
            JobStarted(job_id=job_id, at=AT, runner_id="b", base_commit="c"), expected_last=first
        )
    assert caught.value.job_id == job_id
    assert caught.value.expected == first
    assert "another writer owns the job" in str(caught.value)
    assert len(await runtime.store.read(job_id)) == 2


async def test_second_request_for_same_job_is_rejected(runtime: Runtime) -> None:
    job_id = new_job_id()
    await runtime.store.append(requested(job_id), expected_last=0)
    with pytest.raises(AppendConflictError):
        await runtime.store.append(requested(job_id), expected_last=0)


async def test_landed_retry_is_not_a_conflict(runtime: Runtime) -> None:
    job_id = new_job_id()
    first = await runtime.store.append(requested(job_id), expected_last=0)
    msg_id = (await runtime.js.get_last_msg("TURNLOG_EVENTS", f"turnlog.events.{job_id}.>", direct=True)).headers
    assert msg_id is not None
    landed = await runtime.store._landed_sequence(job_id, msg_id["Nats-Msg-Id"])
    assert landed == first
    assert await runtime.store._landed_sequence(job_id, "someone-else") is None


async def test_atomic_batch_all_or_nothing(runtime: Runtime) -> None:
    original, winner, loser = new_job_id(), new_job_id(), new_job_id()
    last = await runtime.store.append(requested(original), expected_last=0)

    sequence = await runtime.store.append_batch(
        [
            (JobResumed(job_id=original, at=AT, new_job_id=winner, from_turn=0), last),
            (requested(winner), 0),
        ]
    )
    assert sequence == await runtime.store.last_sequence(winner)

    with pytest.raises(AppendConflictError):
        await runtime.store.append_batch(
            [
                (JobResumed(job_id=original, at=AT, new_job_id=loser, from_turn=0), last),
                (requested(loser), 0),
            ]
        )
    assert await runtime.store.read(loser) == []
    assert len(await runtime.store.read(original)) == 2
