"""The pure fold: statuses, resume decisions, and idempotence under redelivery (property-based)."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    CheckpointDeleted,
    Event,
    JobCompleted,
    JobFailed,
    JobRequested,
    JobResumed,
    JobStarted,
    TurnCompleted,
    Usage,
)
from services.common.fold import evolve, fold

AT = "2026-01-15T10:30:45.000Z"
JOB = "abc123"


def turn(number: int) -> TurnCompleted:
    return TurnCompleted(
        job_id=JOB,
        at=AT,
        turn=number,
        assistant_content=msgspec.Raw(b"[]"),
        tool_results=[],
        stop_reason="tool_use",
        model="m",
        usage=Usage(input_tokens=100, output_tokens=10),
        model_ms=1.0,
        tools_ms=1.0,
    )


def history(turns: int, ending: Event | None) -> list[tuple[int, Event]]:
    events: list[Event] = [
        JobRequested(job_id=JOB, at=AT, repository="o/r", task="t", max_turns=10),
        JobStarted(job_id=JOB, at=AT, runner_id="r", base_commit="c"),
        *[turn(number) for number in range(1, turns + 1)],
    ]
    if ending is not None:
        events.append(ending)
    return list(enumerate(events, start=1))


def test_failed_job_can_resume() -> None:
    failed = JobFailed(job_id=JOB, at=AT, kind="rate_limited", message="API rate limit exceeded", retryable=True)
    checkpoint = fold(history(5, failed))
    assert checkpoint is not None
    assert checkpoint.job_status == "failed"
    assert checkpoint.turns == 5
    assert checkpoint.messages == 11
    assert checkpoint.can_resume is True
    assert checkpoint.failure is not None
    assert checkpoint.failure.kind == "rate_limited"
    assert checkpoint.usage.input_tokens == 500
    assert checkpoint.last_sequence == 8


def test_completed_job_cannot_resume() -> None:
    checkpoint = fold(history(8, JobCompleted(job_id=JOB, at=AT, summary="done", turns=8)))
    assert checkpoint is not None
    assert checkpoint.can_resume is False
    assert checkpoint.can_resume_reason == "job abc123 is completed; start a new job instead"


def test_resumed_job_names_successor() -> None:
    events = history(5, JobFailed(job_id=JOB, at=AT, kind="x", message="m", retryable=True))
    events.append((len(events) + 1, JobResumed(job_id=JOB, at=AT, new_job_id="def456", from_turn=5)))
    checkpoint = fold(events)
    assert checkpoint is not None
    assert checkpoint.job_status == "resumed"
    assert checkpoint.resumed_as == "def456"
    assert checkpoint.can_resume_reason == ("job abc123 was already resumed as job def456; resume that job instead")


def test_job_without_turns_left_cannot_resume() -> None:
    checkpoint = fold(history(10, JobFailed(job_id=JOB, at=AT, kind="max_turns", message="m", retryable=False)))
    assert checkpoint is not None
    assert checkpoint.can_resume is False
    assert "used all 10 turns" in checkpoint.can_resume_reason


def test_deleted_job_has_no_checkpoint() -> None:
    events = history(2, None)
    events.append((len(events) + 1, CheckpointDeleted(job_id=JOB, at=AT)))
    assert fold(events) is None


@given(
    turns=st.integers(min_value=0, max_value=10),
    ending=st.sampled_from(["failed", "completed", None]),
    redeliveries=st.lists(st.integers(min_value=0, max_value=20), max_size=30),
)
def test_redelivered_events_change_nothing(turns: int, ending: str | None, redeliveries: list[int]) -> None:
    final: Event | None = None
    if ending == "failed":
        final = JobFailed(job_id=JOB, at=AT, kind="upstream_error", message="m", retryable=True)
    elif ending == "completed":
        final = JobCompleted(job_id=JOB, at=AT, summary="s", turns=turns)
    events = history(turns, final)
    expected = fold(events)

    # Replay every event in order, re-applying earlier ones at random points as a redelivering consumer would.
    state = None
    for index, (sequence, event) in enumerate(events):
        state = evolve(state, event, sequence)
        for pick in redeliveries:
            if pick <= index:
                again_sequence, again = events[pick]
                state = evolve(state, again, again_sequence)
    assert state == expected
