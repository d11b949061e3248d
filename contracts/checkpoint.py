"""The checkpoint read model: a small summary of one job, folded from its events and served by the API."""

from __future__ import annotations

import msgspec

__all__ = ["Checkpoint", "Failure", "UsageTotals"]

JOB_STATUSES = ("queued", "running", "failed", "completed", "cancelled", "resumed", "unknown")


class Failure(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Why a job failed and whether retrying may help."""

    kind: str
    message: str
    retryable: bool
    retry_not_before: str | None = None


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Token usage summed over every turn of one job, and its estimated cost in US dollars."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    estimated_cost_usd: float = 0.0


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Summary and pointers for one job; the message history itself is read from the event log."""

    job_id: str
    job_status: str
    turns: int
    max_turns: int
    messages: int
    created_at: str
    last_updated: str
    repository: str
    task: str
    can_resume: bool
    can_resume_reason: str
    failure: Failure | None = None
    resume_of: str | None = None
    resumed_as: str | None = None
    from_turn: int | None = None
    note: str | None = None
    callback_url: str | None = None
    runner_id: str | None = None
    attempt: int = 0
    summary: str | None = None
    cancel_requested: bool = False
    usage: UsageTotals = UsageTotals()
    last_sequence: int = 0
    history_error: str | None = None
