"""One writer per job: racing runners, a stale runner after a takeover, and a retried append that landed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from contracts import topology
from contracts.events import JobCancelled, JobCancelRequested, JobStarted, TurnCompleted
from services.common.clock import now_iso
from services.common.store import EventStore, StoredEvent
from services.runner.service import RunnerService
from tests.runner.conftest import Harness, wait_for

MakeHarness = Callable[..., Awaitable[Harness]]


async def turn_numbers(harness: Harness, job_id: str) -> list[int]:
    return [event.turn for event in await harness.events(job_id) if isinstance(event, TurnCompleted)]


async def test_racing_runners_one_starts(make_harness: MakeHarness) -> None:
    harness = await make_harness(latency_ms=200)
    job_id = await harness.create_job()

    outcomes = await asyncio.gather(harness.run(job_id), harness.run(job_id))

    assert sorted(outcomes) == ["completed", "lost"]
    events = await harness.events(job_id)
    assert len([event for event in events if isinstance(event, JobStarted)]) == 1
    assert await turn_numbers(harness, job_id) == list(range(1, 9))


async def test_stale_runner_stops_after_takeover(make_harness: MakeHarness) -> None:
    harness = await make_harness(latency_ms=150)
    job_id = await harness.create_job()
    stale = asyncio.create_task(harness.run(job_id))

    async def two_turns() -> bool:
        return len(await turn_numbers(harness, job_id)) >= 2

    await wait_for(two_turns, 30, "two turns by the first runner")
    # The stale runner may record a turn between the new runner's read and its start. The start then
    # loses and the queue would deliver the job again, so the test tries again too.
    attempts = [await harness.run(job_id)]
    while attempts[-1] == "lost" and len(attempts) < 5:
        attempts.append(await harness.run(job_id))

    assert attempts[-1] == "completed", attempts
    assert await asyncio.wait_for(stale, 30) == "lost"
    events = await harness.events(job_id)
    starts = [event for event in events if isinstance(event, JobStarted)]
    assert [start.attempt for start in starts] == [1, 2]
    assert starts[0].runner_id != starts[1].runner_id
    assert await turn_numbers(harness, job_id) == list(range(1, 9))


class _LostAckJetStream:
    """A JetStream context whose first publish is stored by the server but raises a timeout to the caller."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.publishes = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.publishes += 1
        ack = await self._js.publish(*args, **kwargs)
        if self.publishes == 1:
            raise NatsTimeoutError
        return ack

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)


async def test_retried_append_that_landed(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    job_id = await harness.create_job()
    last = await harness.runtime.store.last_sequence(job_id)
    flaky = _LostAckJetStream(harness.runtime.js)
    store = EventStore(harness.runtime.nc, flaky)  # type: ignore[arg-type]

    cancel = JobCancelRequested(job_id=job_id, at=now_iso(), reason="test")
    sequence = await store.append(cancel, expected_last=last)

    assert flaky.publishes == 2
    assert sequence == await harness.runtime.store.last_sequence(job_id)
    assert await harness.types(job_id) == ["JobRequested", "JobCancelRequested"]


async def test_cancel_during_retry_wait(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="429:30@3")
    job_id = await harness.create_job()
    running = asyncio.create_task(harness.run(job_id))

    async def turn_three_asked() -> bool:
        return len(await harness.sim_requests()) >= 3

    await wait_for(turn_three_asked, 30, "the rate-limited request of turn 3")
    last = await harness.runtime.store.last_sequence(job_id)
    await harness.runtime.store.append(JobCancelRequested(job_id=job_id, at=now_iso()), expected_last=last)

    # The server asked for 30 s; the cancel must end the wait long before that.
    assert await asyncio.wait_for(running, 10) == "cancelled"
    events = await harness.events(job_id)
    assert isinstance(events[-2], JobCancelRequested)
    assert isinstance(events[-1], JobCancelled)
    assert events[-1].turns == 2
    assert len(await harness.sim_requests()) == 3


async def test_shutdown_hands_job_back(make_harness: MakeHarness) -> None:
    # The lease is long, so only an explicit hand-back lets the second runner continue within the test.
    harness = await make_harness(latency_ms=500, lease_seconds=60.0, shutdown_grace=5.0)
    first = harness.runner()
    first_task = asyncio.create_task(first.run())
    job_id = await harness.create_job()

    async def one_turn() -> bool:
        return len(await turn_numbers(harness, job_id)) >= 1

    await wait_for(one_turn, 30, "the first turn")
    await asyncio.wait_for(first.stop(), 10)
    await asyncio.wait_for(first_task, 10)
    stopped_at = await turn_numbers(harness, job_id)

    second = harness.runner()
    await _run_until_completed(harness, second, job_id)

    assert 1 <= len(stopped_at) < 8
    assert await turn_numbers(harness, job_id) == list(range(1, 9))
    starts = [event for event in await harness.events(job_id) if isinstance(event, JobStarted)]
    assert [start.runner_id for start in starts] == [first.runner_id, second.runner_id]


class _LaggingReplicaStore(EventStore):
    """An event store whose reads come back empty, as from a follower that lags the stream leader.

    The first `stale_reads` reads are empty, and so is every read until `stale_until` (loop time).
    """

    def __init__(self, store: EventStore, stale_reads: int = 0, stale_until: float = 0.0) -> None:
        super().__init__(store.nc, store.js)
        self.stale_reads = stale_reads
        self.stale_until = stale_until

    async def read(self, job_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        if self.stale_reads > 0:
            self.stale_reads -= 1
            return []
        if asyncio.get_running_loop().time() < self.stale_until:
            return []
        return await super().read(job_id, after=after, limit=limit)


async def _run_until_completed(harness: Harness, runner: RunnerService, job_id: str) -> None:
    task = asyncio.create_task(runner.run())
    try:

        async def completed() -> bool:
            return (await harness.types(job_id))[-1] == "JobCompleted"

        await wait_for(completed, 30, "the job to complete")
    finally:
        await runner.stop()
        await asyncio.wait_for(task, 10)


async def test_stale_read_waits_without_handback(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    store = _LaggingReplicaStore(harness.runtime.store, stale_reads=3)
    runner = harness.runner(store=store)
    job_id = await harness.create_job()
    await _run_until_completed(harness, runner, job_id)

    # The runner read again in place: the work item was delivered once, never handed back.
    info = await harness.runtime.js.consumer_info(topology.EVENTS_STREAM, topology.RUNNER_CONSUMER)
    assert info.delivered.consumer_seq == 1
    assert store.stale_reads == 0
    assert await turn_numbers(harness, job_id) == list(range(1, 9))


async def test_stale_history_handed_back_with_delay(make_harness: MakeHarness) -> None:
    # A long lease: a redelivery that waited for the ack wait instead of the 2 s nak delay would time out.
    harness = await make_harness(lease_seconds=60.0, store_retry_window=0.3)
    store = _LaggingReplicaStore(harness.runtime.store, stale_until=asyncio.get_running_loop().time() + 1.0)
    runner = harness.runner(store=store)
    job_id = await harness.create_job()

    started = asyncio.get_running_loop().time()
    await _run_until_completed(harness, runner, job_id)

    # The first delivery gave up on the stale history and handed the item back; the redelivery ran it.
    info = await harness.runtime.js.consumer_info(topology.EVENTS_STREAM, topology.RUNNER_CONSUMER)
    assert info.delivered.consumer_seq == 2
    assert asyncio.get_running_loop().time() - started < 30
    assert await turn_numbers(harness, job_id) == list(range(1, 9))
