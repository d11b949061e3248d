"""Property: a live projection with redeliveries and restarts equals a rebuild from sequence 1, byte for byte."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js.errors import NoKeysError

from contracts.events import CheckpointDeleted, Event, JobCancelled, JobCompleted, JobFailed, JobResumed
from services.common.ids import new_job_id
from services.common.runtime import open_runtime
from services.common.settings import Settings
from services.projector.generations import checkpoint_bucket, open_bucket
from services.projector.projection import OutOfOrderError, apply_event
from services.projector.rebuild import rebuild_projection
from tests.projector.helpers import AT, requested, started, turn

ENDINGS = ("failed", "rate_limited", "completed", "cancelled", "deleted", "running", "resumed")

job_plans = st.lists(st.tuples(st.integers(min_value=0, max_value=4), st.sampled_from(ENDINGS)), min_size=1, max_size=4)


def ending_event(job_id: str, ending: str, turns: int) -> Event | None:
    if ending == "failed":
        return JobFailed(job_id=job_id, at=AT, kind="model_rejected", message="400", retryable=False, turns=turns)
    if ending in ("rate_limited", "resumed"):
        return JobFailed(
            job_id=job_id,
            at=AT,
            kind="rate_limited",
            message="429",
            retryable=True,
            retry_not_before="2026-01-15T11:30:45.000Z",
            turns=turns,
        )
    if ending == "completed":
        return JobCompleted(job_id=job_id, at=AT, summary="done", turns=turns)
    if ending == "cancelled":
        return JobCancelled(job_id=job_id, at=AT, turns=turns)
    if ending == "deleted":
        return CheckpointDeleted(job_id=job_id, at=AT, requested_by="retention", reason="old")
    return None


async def append_histories(runtime: Any, plans: list[tuple[int, str]], order: random.Random) -> tuple[list[str], int]:
    """Append every job's history, interleaving jobs; a `resumed` job is resumed into a child job.

    Returns the job ids and the number of events appended.
    """
    queues: dict[str, list[Event]] = {}
    parents: dict[str, str] = {}
    for turns, ending in plans:
        job_id = new_job_id()
        events: list[Event] = [requested(job_id), started(job_id), *[turn(job_id, n) for n in range(1, turns + 1)]]
        final = ending_event(job_id, ending, turns)
        if final is not None:
            events.append(final)
        queues[job_id] = events
        if ending == "resumed":
            parents[job_id] = new_job_id()

    jobs = list(queues)
    last = dict.fromkeys(jobs, 0)
    total = 0
    while any(queues.values()):
        job_id = order.choice([job for job in jobs if queues[job]])
        event = queues[job_id].pop(0)
        last[job_id] = await runtime.store.append(event, expected_last=last[job_id])
        total += 1
        if not queues[job_id] and job_id in parents:
            child = parents[job_id]
            turns = event.turns if isinstance(event, JobFailed) else 0
            resumed = JobResumed(job_id=job_id, at=AT, new_job_id=child, from_turn=turns)
            await runtime.store.append_batch(
                [(resumed, last[job_id]), (requested(child, resume_of=job_id, from_turn=turns), 0)]
            )
            total += 2
            jobs.append(child)
            queues[child] = []
    return jobs, total


async def project_live(runtime: Any, bucket: Any, jobs: list[str], order: random.Random) -> None:
    """Apply the jobs' events as redelivering, restarting projectors would: out of order, repeated, deferred.

    Each stored event is applied at least once. A delivery picks a pending event at random, so
    newer events often overtake older ones (the projector must defer them); applied events are
    delivered again at random, as a consumer does after a crash before its ack.
    """
    pending: list[tuple[int, int, Event]] = []
    for job_id in jobs:
        previous = 0
        for stored in await runtime.store.read(job_id):
            assert stored.event is not None
            pending.append((stored.sequence, previous, stored.event))
            previous = stored.sequence
    applied: list[tuple[int, int, Event]] = []
    deliveries = 0
    while pending:
        deliveries += 1
        assert deliveries < 50 * (len(pending) + len(applied)) + 100, "the projection stopped making progress"
        if applied and order.random() < 0.2:
            sequence, previous, event = order.choice(applied)
            await apply_event(bucket, event, sequence, previous=previous)
            continue
        item = order.choice(pending)
        sequence, previous, event = item
        try:
            await apply_event(bucket, event, sequence, previous=previous)
        except OutOfOrderError:
            continue
        pending.remove(item)
        applied.append(item)


async def snapshot(bucket: Any, jobs: list[str]) -> dict[str, bytes]:
    try:
        keys = set(await bucket.keys())
    except NoKeysError:
        keys = set()
    return {job_id: (await bucket.get(job_id)).value for job_id in jobs if job_id in keys}


async def scenario(runtime: Any, plans: list[tuple[int, str]], seed: int) -> None:
    order = random.Random(seed)
    jobs, _ = await append_histories(runtime, plans, order)
    live_bucket = await open_bucket(runtime.js, f"live-{new_job_id()}")
    try:
        await project_live(runtime, live_bucket, jobs, order)
        live = await snapshot(live_bucket, jobs)

        await rebuild_projection(runtime.js)
        rebuilt = await snapshot(await checkpoint_bucket(runtime.js), jobs)
        assert rebuilt == live
        kept = sum(1 for _, ending in plans if ending != "deleted")
        children = sum(1 for _, ending in plans if ending == "resumed")
        assert len(live) == kept + children
    finally:
        await runtime.js.delete_key_value(live_bucket._name)


@pytest.fixture
async def runtime(nats_server: Any) -> AsyncIterator[Any]:
    opened = await open_runtime(Settings(nats_url=nats_server.url), name="property")
    yield opened
    await opened.close()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=job_plans, seed=st.integers(min_value=0, max_value=2**32))
async def test_live_projection_equals_rebuild(runtime: Any, plans: list[tuple[int, str]], seed: int) -> None:
    await asyncio.wait_for(scenario(runtime, plans, seed), timeout=60)
