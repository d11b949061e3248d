"""Auto-resume against a real nats-server, with an injectable clock: retry time, chain limit, one winner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.errors import NotFoundError

from contracts.events import AutoResumeDecided, JobFailed, JobRequested, JobResumed
from services.autoresume.service import AutoResumeService
from services.common.clock import to_iso
from services.common.runtime import Runtime
from services.common.settings import Settings

FAILED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RETRY_AT = FAILED_AT + timedelta(hours=1)


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def settings_for(url: str, **extra: Any) -> Settings:
    return Settings(nats_url=url, auto_resume=True, auto_resume_recheck=0.1, consumer_ack_wait=5, **extra)


async def decisions(runtime: Runtime, job_id: str) -> list[AutoResumeDecided]:
    return [stored.event for stored in await runtime.store.read(job_id) if isinstance(stored.event, AutoResumeDecided)]


async def resumed_requests(runtime: Runtime) -> list[JobRequested]:
    info = await runtime.js.stream_info("TURNLOG_EVENTS", subjects_filter="turnlog.events.*.requested")
    found = []
    for subject in info.state.subjects or {}:
        stored = await runtime.store.read(subject.split(".")[2])
        first = stored[0].event
        if isinstance(first, JobRequested) and first.resume_of is not None:
            found.append(first)
    return found


async def run_for(services: list[AutoResumeService], check: Any, until: Any) -> None:
    tasks = [asyncio.create_task(service.run()) for service in services]
    try:
        await until(check, timeout=15)
    finally:
        for service in services:
            service.stop()
        await asyncio.gather(*tasks)


async def test_resumes_after_retry_not_before(runtime: Runtime, jobs: Any, until: Any, nats_server: Any) -> None:
    job_id = await jobs.job(FAILED_AT)
    await jobs.fail(job_id, FAILED_AT, retry_at=to_iso(RETRY_AT))
    clock = Clock(RETRY_AT - timedelta(minutes=5))
    service = AutoResumeService(store=runtime.store, settings=settings_for(nats_server.url), clock=clock)

    task = asyncio.create_task(service.run())
    try:
        # Before the retry time it keeps waiting and records nothing.
        await asyncio.sleep(1.0)
        assert await jobs.types(job_id) == [
            "job.requested.v1", "job.started.v1", "turn.completed.v1", "turn.completed.v1", "job.failed.v1"
        ]  # fmt: skip
        clock.moment = RETRY_AT + timedelta(seconds=1)
        await until(lambda: _decided(runtime, job_id), timeout=15)
    finally:
        service.stop()
        await task

    assert (await jobs.types(job_id))[-2:] == ["job.resumed.v1", "autoresume.decided.v1"]
    decided = (await decisions(runtime, job_id))[0]
    assert decided.decision == "resumed"
    assert decided.code == "resumed"
    assert decided.new_job_id is not None
    requested = (await runtime.store.read(decided.new_job_id))[0].event
    assert isinstance(requested, JobRequested)
    assert requested.resume_of == job_id
    assert requested.from_turn == 2
    assert requested.task == "Add error handling"


async def test_chain_limit_skips_once(runtime: Runtime, jobs: Any, until: Any, nats_server: Any) -> None:
    root = await jobs.job(FAILED_AT)
    await jobs.append(JobResumed(job_id=root, at=to_iso(FAILED_AT), new_job_id="chainsecond", from_turn=2))
    second = await jobs.job(FAILED_AT, job_id="chainsecond", resume_of=root)
    await jobs.fail(second, FAILED_AT, kind="overloaded")
    clock = Clock(FAILED_AT + timedelta(days=1))
    settings = settings_for(nats_server.url, auto_resume_max_chain=1)

    await run_for(
        [AutoResumeService(store=runtime.store, settings=settings, clock=clock)],
        lambda: _decided(runtime, second),
        until,
    )
    # A second pass over the same failure (a new consumer replays it) records nothing new.
    await run_for(
        [AutoResumeService(store=runtime.store, settings=settings, clock=clock, consumer="autoresume-replay")],
        lambda: _acked(runtime, "autoresume-replay"),
        until,
    )

    recorded = await decisions(runtime, second)
    assert len(recorded) == 1
    assert recorded[0].decision == "skipped"
    assert recorded[0].code == "chain_limit"
    assert "TURNLOG_AUTO_RESUME_MAX_CHAIN is 1" in recorded[0].reason
    assert await resumed_requests(runtime) == [(await runtime.store.read(second))[0].event]


async def test_not_retryable_never_resumed(runtime: Runtime, jobs: Any, until: Any, nats_server: Any) -> None:
    job_id = await jobs.job(FAILED_AT)
    await jobs.fail(job_id, FAILED_AT, kind="model_rejected", retryable=False)
    service = AutoResumeService(
        store=runtime.store, settings=settings_for(nats_server.url), clock=Clock(FAILED_AT + timedelta(days=1))
    )
    await run_for([service], lambda: _decided(runtime, job_id), until)

    recorded = await decisions(runtime, job_id)
    assert [(item.decision, item.code) for item in recorded] == [("skipped", "not_retryable")]
    assert await resumed_requests(runtime) == []


async def test_two_instances_resume_once(runtime: Runtime, jobs: Any, until: Any, nats_server: Any) -> None:
    job_id = await jobs.job(FAILED_AT)
    await jobs.fail(job_id, FAILED_AT, kind="overloaded")
    clock = Clock(FAILED_AT + timedelta(minutes=5))
    settings = settings_for(nats_server.url)
    # Separate consumers, so both instances see the same failure and race for it.
    twins = [
        AutoResumeService(store=runtime.store, settings=settings, clock=clock, consumer=f"autoresume-{index}")
        for index in (1, 2)
    ]
    await run_for(twins, lambda: _both_acked(runtime), until)

    history = [stored.event for stored in await runtime.store.read(job_id)]
    assert sum(isinstance(event, JobResumed) for event in history) == 1
    assert len(await decisions(runtime, job_id)) == 1
    assert len(await resumed_requests(runtime)) == 1
    assert not any(isinstance(event, JobFailed) for event in history[history.index(next(
        event for event in history if isinstance(event, JobResumed)
    )):])  # fmt: skip


async def _decided(runtime: Runtime, job_id: str) -> bool:
    return bool(await decisions(runtime, job_id))


async def _acked(runtime: Runtime, consumer: str) -> bool:
    try:
        info = await runtime.js.consumer_info("TURNLOG_EVENTS", consumer)
    except NotFoundError:
        return False
    return info.num_pending == 0 and info.num_ack_pending == 0 and (info.ack_floor.stream_seq or 0) > 0


async def _both_acked(runtime: Runtime) -> bool:
    return await _acked(runtime, "autoresume-1") and await _acked(runtime, "autoresume-2")
