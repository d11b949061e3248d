"""Deleting a job: a tombstone event, then a purge of its history, never while it or a successor runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from contracts.checkpoint import Checkpoint
from contracts.events import CheckpointDeleted
from services.common.clock import now_iso
from services.common.history import load_job
from services.common.store import AppendConflictError, EventStore

__all__ = [
    "DeletionConflictError",
    "DeletionError",
    "JobActiveError",
    "JobNotFoundError",
    "LiveOverlay",
    "active_successor",
    "delete_job",
]

log = logging.getLogger(__name__)

LiveOverlay = Callable[[Checkpoint], Awaitable[Checkpoint]]
"""Turns a folded checkpoint into its live view (a running job whose lease expired is `unknown`)."""

_ACTIVE = frozenset({"queued", "running"})
_MAX_CHAIN = 100


class DeletionError(Exception):
    """Base error of job deletion; `job_id` names the job that was to be deleted."""

    def __init__(self, job_id: str, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)


class JobNotFoundError(DeletionError):
    """The job has no history, or it was deleted already."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id} not found; list jobs with GET /checkpoints")


class JobActiveError(DeletionError):
    """The job, or a job resumed from it, is queued or running; deleting it would break that job."""

    def __init__(self, job_id: str, blocker: str, status: str) -> None:
        self.blocker = blocker
        self.status = status
        if blocker == job_id:
            message = f"job {job_id} is {status}; cancel it first"
        else:
            message = f"job {job_id} was resumed as job {blocker}, which is {status}; cancel that job first"
        super().__init__(job_id, message)


class DeletionConflictError(DeletionError):
    """An event was appended to the job while it was being deleted."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id} changed while it was being deleted; check its status and retry")


async def active_successor(store: EventStore, checkpoint: Checkpoint, live: LiveOverlay) -> Checkpoint | None:
    """Return the first queued or running job down the `resumedAs` chain after `checkpoint`, if any."""
    current = checkpoint
    for _ in range(_MAX_CHAIN):
        if current.resumed_as is None:
            return None
        history = await load_job(store, current.resumed_as)
        if history is None or history.checkpoint is None:
            return None
        current = await live(history.checkpoint)
        if current.job_status in _ACTIVE:
            return current
    return None


async def delete_job(store: EventStore, job_id: str, *, reason: str, live: LiveOverlay, at: str | None = None) -> int:
    """Append the job's `CheckpointDeleted` tombstone, then purge every event before it.

    The tombstone is checked against the history the decision was made on, so a runner that
    appended meanwhile makes this raise DeletionConflictError instead of deleting a job that moved.
    Returns the tombstone's sequence.
    """
    history = await load_job(store, job_id)
    if history is None or history.checkpoint is None:
        raise JobNotFoundError(job_id)
    view = await live(history.checkpoint)
    if view.job_status in _ACTIVE:
        raise JobActiveError(job_id, job_id, view.job_status)
    successor = await active_successor(store, view, live)
    if successor is not None:
        raise JobActiveError(job_id, successor.job_id, successor.job_status)

    tombstone = CheckpointDeleted(job_id=job_id, at=at or now_iso(), reason=reason)
    try:
        sequence = await store.append(tombstone, expected_last=history.last_sequence)
    except AppendConflictError as exc:
        raise DeletionConflictError(job_id) from exc
    # NOTE: a crash between the tombstone and the purge leaves the job invisible (every reader stops
    # at the tombstone) but its older events stay stored until an operator purges the subject.
    await store.purge(job_id, before=sequence)
    log.info("job %s deleted (%s); history purged below sequence %d", job_id, reason, sequence)
    return sequence
