"""When a failed job may be resumed automatically: a pure decision over its checkpoint and the time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.checkpoint import Checkpoint
from services.common.clock import parse_iso

__all__ = ["Decision", "decide", "retry_time"]


@dataclass(frozen=True, slots=True)
class Decision:
    """`resume` now, `skip` for good (with a stable `code`), `wait` until `not_before`, or `ignore`."""

    action: str
    code: str
    reason: str
    not_before: datetime | None = None


def retry_time(checkpoint: Checkpoint, failed_at: datetime, links: int, backoff: float) -> datetime:
    """Return when the job may be retried: its failure's `retryNotBefore`, else `backoff` × 2^links after it failed."""
    failure = checkpoint.failure
    if failure is not None and failure.retry_not_before:
        return parse_iso(failure.retry_not_before)
    return failed_at + timedelta(seconds=backoff * 2**links)


def decide(
    checkpoint: Checkpoint,
    *,
    failed_at: datetime,
    links: int,
    now: datetime,
    max_chain: int,
    backoff: float,
) -> Decision:
    """Decide what auto-resume does with one job, `links` being its count of `resumeOf` links."""
    job_id = checkpoint.job_id
    if checkpoint.job_status != "failed" or checkpoint.failure is None:
        return Decision("ignore", "not_failed", f"job {job_id} is {checkpoint.job_status}, not failed")
    failure = checkpoint.failure
    if not checkpoint.can_resume:
        return Decision("skip", "not_resumable", checkpoint.can_resume_reason)
    if not failure.retryable:
        return Decision(
            "skip",
            "not_retryable",
            f"job {job_id} failed with {failure.kind}, which a retry does not fix; "
            "resume it by hand after fixing the cause",
        )
    if links >= max_chain:
        return Decision(
            "skip",
            "chain_limit",
            f"job {job_id} is resume {links} of its chain and TURNLOG_AUTO_RESUME_MAX_CHAIN is {max_chain}; "
            "resume it by hand to go on",
        )
    not_before = retry_time(checkpoint, failed_at, links, backoff)
    if now < not_before:
        return Decision("wait", "waiting", f"job {job_id} may be retried from {not_before.isoformat()}", not_before)
    return Decision("resume", "resumed", f"job {job_id} failed with {failure.kind}, which is retryable")
