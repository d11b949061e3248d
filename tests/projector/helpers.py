"""Event builders and waits shared by the projector tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from contracts.events import JobRequested, JobStarted, TurnCompleted, Usage

AT = "2026-01-15T10:30:45.000Z"


def requested(job_id: str, *, resume_of: str | None = None, from_turn: int | None = None) -> JobRequested:
    return JobRequested(
        job_id=job_id, at=AT, repository="o/r", task="t", max_turns=10, resume_of=resume_of, from_turn=from_turn
    )


def started(job_id: str) -> JobStarted:
    return JobStarted(job_id=job_id, at=AT, runner_id="r", base_commit="c")


def turn(job_id: str, number: int) -> TurnCompleted:
    return TurnCompleted(
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


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}") from None
