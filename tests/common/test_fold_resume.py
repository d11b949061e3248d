"""Resume decisions of the fold: reasons for every refusal, rate limits, unreadable histories, auto-retry timing."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.events import Event, JobCancelled, JobFailed, JobResumed
from services.common.fold import evolve, fold, mark_history_error, retry_allowed, static_resume_decision
from tests.projector.helpers import requested, started, turn

AT = "2026-01-15T10:30:45.000Z"
JOB = "abc123"
RETRY_AT = "2026-01-15T11:30:45.000Z"


def history(turns: int, *endings: Event) -> list[tuple[int, Event]]:
    events: list[Event] = [
        requested(JOB),
        started(JOB),
        *[turn(JOB, number) for number in range(1, turns + 1)],
        *endings,
    ]
    return list(enumerate(events, start=1))


def rate_limited() -> JobFailed:
    return JobFailed(
        job_id=JOB, at=AT, kind="rate_limited", message="429", retryable=True, retry_not_before=RETRY_AT, turns=5
    )


def test_rate_limited_job_resumable_with_warning() -> None:
    checkpoint = fold(history(5, rate_limited()))
    assert checkpoint is not None
    assert checkpoint.can_resume is True
    assert checkpoint.can_resume_reason == (
        f"job abc123 failed at turn 6 of 10: rate limited until {RETRY_AT}; resuming now may hit the limit again"
    )


def test_retry_allowed_waits_for_not_before() -> None:
    checkpoint = fold(history(5, rate_limited()))
    assert checkpoint is not None
    before = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
    after = datetime(2026, 1, 15, 11, 31, tzinfo=UTC)
    assert retry_allowed(checkpoint, before) == (
        False,
        f"job abc123 is rate limited until {RETRY_AT}; retry after that time",
    )
    assert retry_allowed(checkpoint, after) == (
        True,
        "job abc123 failed with rate_limited at turn 6 and may be retried now",
    )


def test_retry_allowed_rejects_permanent_failure() -> None:
    failed = JobFailed(job_id=JOB, at=AT, kind="model_rejected", message="400", retryable=False)
    checkpoint = fold(history(2, failed))
    assert checkpoint is not None
    allowed, reason = retry_allowed(checkpoint, datetime(2030, 1, 1, tzinfo=UTC))
    assert allowed is False
    assert reason == (
        "job abc123 failed with model_rejected, which a retry does not fix; resume it by hand after fixing the cause"
    )


def test_retry_allowed_follows_static_refusals() -> None:
    resumed = JobResumed(job_id=JOB, at=AT, new_job_id="def456", from_turn=5)
    checkpoint = fold(history(5, rate_limited(), resumed))
    assert checkpoint is not None
    assert retry_allowed(checkpoint, datetime(2030, 1, 1, tzinfo=UTC)) == (
        False,
        "job abc123 was already resumed as job def456; resume that job instead",
    )


def test_refusal_reasons_per_status() -> None:
    cancelled = fold(history(2, JobCancelled(job_id=JOB, at=AT, turns=2)))
    running = fold(history(2))
    queued = fold(history(0)[:1])
    assert cancelled is not None
    assert running is not None
    assert queued is not None
    assert static_resume_decision(cancelled) == (False, "job abc123 was cancelled; start a new job instead")
    assert static_resume_decision(running) == (False, "job abc123 is running; cancel it or wait until it stops")
    assert static_resume_decision(queued) == (False, "job abc123 is queued; cancel it or wait until it stops")


def test_history_error_blocks_resume() -> None:
    checkpoint = fold(history(3, rate_limited()))
    marked = mark_history_error(checkpoint, "corrupt event at sequence 9: bad", 9)
    assert marked is not None
    assert marked.history_error == "corrupt event at sequence 9: bad"
    assert marked.last_sequence == 9
    assert marked.can_resume is False
    assert marked.can_resume_reason == (
        "job abc123 has an unreadable history (corrupt event at sequence 9: bad); it cannot be rebuilt, "
        "so start a new job"
    )


def test_history_error_first_wins_and_is_idempotent() -> None:
    checkpoint = fold(history(1))
    first = mark_history_error(checkpoint, "first", 10)
    again = mark_history_error(first, "first", 10)
    second = mark_history_error(first, "second", 11)
    assert again is first
    assert second is not None
    assert second.history_error == "first"
    assert second.last_sequence == 11
    assert mark_history_error(None, "x", 3) is None


def test_events_after_history_error_still_apply() -> None:
    checkpoint = mark_history_error(fold(history(1)), "unsupported schema version turn.completed.v9 at sequence 4", 4)
    later = evolve(checkpoint, rate_limited(), 5)
    assert later is not None
    assert later.job_status == "failed"
    assert later.history_error == "unsupported schema version turn.completed.v9 at sequence 4"
    assert later.can_resume is False
