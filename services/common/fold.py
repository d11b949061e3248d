"""The fold from events to a checkpoint: one pure function shared by the projector, resume and replay."""

from __future__ import annotations

from datetime import datetime

import msgspec

from contracts.checkpoint import Checkpoint, Failure, UsageTotals
from contracts.events import (
    AutoResumeDecided,
    CallbackDelivered,
    CallbackFailed,
    CheckpointDeleted,
    Event,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRequested,
    JobResumed,
    JobStarted,
    TurnCompleted,
    Usage,
)

__all__ = ["evolve", "fold", "mark_history_error", "retry_allowed", "static_resume_decision"]

# US dollars per million tokens (Claude Sonnet list prices); an estimate, not a bill.
_PRICE_INPUT = 3.0
_PRICE_OUTPUT = 15.0
_PRICE_CACHE_READ = 0.30
_PRICE_CACHE_WRITE = 3.75

TERMINAL = frozenset({"failed", "completed", "cancelled", "resumed"})


def fold(events: list[tuple[int, Event]]) -> Checkpoint | None:
    """Fold a job's (sequence, event) pairs in order into its checkpoint; None when it has none or was deleted."""
    state: Checkpoint | None = None
    for sequence, event in events:
        state = evolve(state, event, sequence)
    return state


def evolve(state: Checkpoint | None, event: Event, sequence: int) -> Checkpoint | None:
    """Apply one event at stream `sequence`; an event at or below the last applied sequence changes nothing."""
    if state is not None and sequence <= state.last_sequence:
        return state
    if isinstance(event, JobRequested):
        return _requested(event, sequence) if state is None else state
    if isinstance(event, CheckpointDeleted):
        return None
    if state is None:
        # A history that does not start with its request is not a job this fold can describe.
        return None
    if isinstance(event, CallbackDelivered | CallbackFailed | AutoResumeDecided):
        # Notes about a job that changed nothing in it: lastUpdated keeps dating the job's own last step,
        # so retention and the "older than 1 h" statistic are not reset by a callback or a decision.
        return _with(state, {"last_sequence": sequence})

    changes: dict[str, object] = {"last_updated": event.at, "last_sequence": sequence}
    if isinstance(event, JobStarted):
        if state.job_status in TERMINAL:
            return _with(state, changes)
        changes.update(job_status="running", runner_id=event.runner_id, attempt=event.attempt)
    elif isinstance(event, TurnCompleted):
        changes.update(
            turns=event.turn,
            messages=_message_count(event.turn, state.note),
            usage=_add_usage(state.usage, event.usage),
        )
    elif isinstance(event, JobFailed):
        failure = Failure(
            kind=event.kind,
            message=event.message,
            retryable=event.retryable,
            retry_not_before=event.retry_not_before,
        )
        changes.update(job_status="failed", failure=failure)
    elif isinstance(event, JobCompleted):
        changes.update(job_status="completed", summary=event.summary)
    elif isinstance(event, JobCancelRequested):
        changes.update(cancel_requested=True)
    elif isinstance(event, JobCancelled):
        changes.update(job_status="cancelled")
    elif isinstance(event, JobResumed):
        changes.update(job_status="resumed", resumed_as=event.new_job_id)
    next_state = _with(state, changes)
    allowed, reason = static_resume_decision(next_state)
    return _with(next_state, {"can_resume": allowed, "can_resume_reason": reason})


def mark_history_error(state: Checkpoint | None, detail: str, sequence: int) -> Checkpoint | None:
    """Record that the job's event at `sequence` cannot be decoded, so the checkpoint says why it cannot resume.

    The first unreadable event wins: later ones do not overwrite `history_error`. Like `evolve`, a
    sequence at or below the last applied one changes nothing, and a job without a checkpoint stays
    without one.
    """
    if state is None or sequence <= state.last_sequence:
        return state
    marked = _with(state, {"last_sequence": sequence, "history_error": state.history_error or detail})
    allowed, reason = static_resume_decision(marked)
    return _with(marked, {"can_resume": allowed, "can_resume_reason": reason})


def static_resume_decision(state: Checkpoint) -> tuple[bool, str]:
    """Decide from the events alone whether a user may resume the job, with a reason they can act on.

    The API refines this with what events cannot know: an expired runner lease makes a running job
    `unknown` and resumable.

    A rate-limited job (a retryable failure with `retry_not_before`) stays resumable before that
    time, with a reason that warns it may hit the limit again. A user who resumes by hand decides
    the risk is worth it, and the limit may have been lifted early. The automatic "not before" rule
    lives in `retry_allowed`, which services that resume jobs without a user must call.
    """
    status = state.job_status
    if status == "completed":
        return False, f"job {state.job_id} is completed; start a new job instead"
    if status == "cancelled":
        return False, f"job {state.job_id} was cancelled; start a new job instead"
    if status == "resumed":
        return (
            False,
            f"job {state.job_id} was already resumed as job {state.resumed_as}; resume that job instead",
        )
    if status in ("queued", "running"):
        return False, f"job {state.job_id} is {status}; cancel it or wait until it stops"
    if state.history_error is not None:
        return (
            False,
            f"job {state.job_id} has an unreadable history ({state.history_error}); "
            "it cannot be rebuilt, so start a new job",
        )
    if state.turns >= state.max_turns:
        return (
            False,
            f"job {state.job_id} used all {state.max_turns} turns; start a new job with a higher maxTurns",
        )
    failure = state.failure
    if failure is not None and failure.retryable and failure.retry_not_before is not None:
        return (
            True,
            f"job {state.job_id} failed at turn {state.turns + 1} of {state.max_turns}: "
            f"{failure.kind.replace('_', ' ')} until {failure.retry_not_before}; "
            "resuming now may hit the limit again",
        )
    return True, f"job {state.job_id} failed at turn {state.turns + 1} of {state.max_turns} and can continue"


def retry_allowed(state: Checkpoint, moment: datetime) -> tuple[bool, str]:
    """Decide whether a service may resume the failed job on its own at `moment` (timezone-aware).

    Stricter than `static_resume_decision`, which is what a user sees: the job must have failed
    with a retryable error, and a `retry_not_before` time must have passed.
    """
    allowed, reason = static_resume_decision(state)
    if not allowed:
        return False, reason
    failure = state.failure
    if state.job_status != "failed" or failure is None:
        return False, f"job {state.job_id} is {state.job_status}, not failed; only failed jobs are retried"
    if not failure.retryable:
        return (
            False,
            f"job {state.job_id} failed with {failure.kind}, which a retry does not fix; "
            "resume it by hand after fixing the cause",
        )
    if failure.retry_not_before is not None:
        not_before = datetime.fromisoformat(failure.retry_not_before.replace("Z", "+00:00"))
        if moment < not_before:
            return (
                False,
                f"job {state.job_id} is {failure.kind.replace('_', ' ')} until {failure.retry_not_before}; "
                "retry after that time",
            )
    return True, f"job {state.job_id} failed with {failure.kind} at turn {state.turns + 1} and may be retried now"


def _requested(event: JobRequested, sequence: int) -> Checkpoint:
    turns = event.from_turn or 0
    return Checkpoint(
        job_id=event.job_id,
        job_status="queued",
        turns=turns,
        max_turns=event.max_turns,
        messages=_message_count(turns, event.note),
        created_at=event.at,
        last_updated=event.at,
        repository=event.repository,
        task=event.task,
        can_resume=False,
        can_resume_reason=f"job {event.job_id} is queued; cancel it or wait until it stops",
        resume_of=event.resume_of,
        from_turn=event.from_turn,
        note=event.note,
        callback_url=event.callback_url,
        last_sequence=sequence,
    )


def _message_count(turns: int, note: str | None) -> int:
    # The task is message 1; each turn adds the assistant's response and the user's tool results.
    # A resume note rides in the same user message as the tool results, so it adds none.
    del note
    return 1 + 2 * turns


def _add_usage(totals: UsageTotals, usage: Usage) -> UsageTotals:
    input_tokens = totals.input_tokens + usage.input_tokens
    output_tokens = totals.output_tokens + usage.output_tokens
    cache_read = totals.cache_read_input_tokens + usage.cache_read_input_tokens
    cache_write = totals.cache_creation_input_tokens + usage.cache_creation_input_tokens
    cost = (
        input_tokens * _PRICE_INPUT
        + output_tokens * _PRICE_OUTPUT
        + cache_read * _PRICE_CACHE_READ
        + cache_write * _PRICE_CACHE_WRITE
    ) / 1_000_000
    return UsageTotals(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
        estimated_cost_usd=round(cost, 6),
    )


def _with(state: Checkpoint, changes: dict[str, object]) -> Checkpoint:
    return msgspec.structs.replace(state, **changes)
