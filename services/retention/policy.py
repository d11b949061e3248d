"""Which jobs the retention policy deletes: a pure selection over live checkpoints and the time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from contracts.checkpoint import Checkpoint
from services.common.clock import parse_iso

__all__ = ["Expired", "Held", "RetentionWindows", "select_expired"]

_ACTIVE = frozenset({"queued", "running"})
_OTHER = frozenset({"failed", "cancelled", "unknown"})


@dataclass(frozen=True, slots=True)
class RetentionWindows:
    """Ages, in seconds since lastUpdated, after which jobs are deleted."""

    completed: float
    other: float
    """For failed, cancelled and unknown jobs."""


@dataclass(frozen=True, slots=True)
class Expired:
    """A resume chain to delete: its last job first, then the jobs it was resumed from, newest first."""

    job: Checkpoint
    age_seconds: float
    reason: str
    ancestors: list[Checkpoint] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Held:
    """A job old enough to delete that is kept, and why."""

    job_id: str
    reason: str


def select_expired(
    views: list[Checkpoint], now: datetime, windows: RetentionWindows
) -> tuple[list[Expired], list[Held]]:
    """Select the chains whose last job is older than its status's window.

    A chain is judged by its last job (the one no other job continues): the jobs it was resumed
    from are deleted with it and never alone, so a job that is still queued or running keeps its
    whole history. A `resumed` job whose successor is already gone is judged on the completed window.
    """
    by_id = {view.job_id: view for view in views}
    expired: list[Expired] = []
    held: list[Held] = []
    for view in views:
        if view.job_status == "resumed" and view.resumed_as in by_id:
            continue
        ancestors = _ancestors(view, by_id)
        age = (now - parse_iso(view.last_updated)).total_seconds()
        if view.job_status in _ACTIVE:
            for ancestor in ancestors:
                if age_of(ancestor, now) >= windows.completed:
                    held.append(Held(ancestor.job_id, f"resumed as job {view.job_id}, which is {view.job_status}"))
            continue
        window = windows.other if view.job_status in _OTHER else windows.completed
        if age < window:
            continue
        reason = f"{view.job_status} and last updated {_duration(age)} ago, more than {_duration(window)}"
        expired.append(Expired(job=view, age_seconds=age, reason=reason, ancestors=ancestors))
    expired.sort(key=lambda item: item.job.last_updated)
    return expired, held


def age_of(view: Checkpoint, now: datetime) -> float:
    """Return the seconds since the job's lastUpdated."""
    return (now - parse_iso(view.last_updated)).total_seconds()


def _ancestors(view: Checkpoint, by_id: dict[str, Checkpoint]) -> list[Checkpoint]:
    found: list[Checkpoint] = []
    current = view
    while current.resume_of is not None and len(found) < 100:
        parent = by_id.get(current.resume_of)
        if parent is None or parent.resumed_as != current.job_id:
            break
        found.append(parent)
        current = parent
    return found


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h".replace(".0h", "h")
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
