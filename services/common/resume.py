"""Resuming a job as a new job, and recording facts on a job after its run is over."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contracts.checkpoint import Checkpoint
from contracts.events import Event, JobRequested, JobResumed
from services.common.history import JobHistory, load_job
from services.common.store import AppendConflictError, EventStore, StoreError

__all__ = ["ResumePlan", "append_fact", "chain_links", "commit_resume", "plan_resume"]

log = logging.getLogger(__name__)

_MAX_FACT_ATTEMPTS = 20
_MAX_CHAIN = 100


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """The two events of a resume and the original's last sequence they were planned against."""

    resumed: JobResumed
    requested: JobRequested
    expected_last: int

    @property
    def new_job_id(self) -> str:
        """Return the id of the job that continues the original."""
        return self.requested.job_id


def plan_resume(
    history: JobHistory,
    *,
    new_job_id: str,
    from_turn: int,
    at: str,
    note: str | None = None,
    callback_url: str | None = None,
) -> ResumePlan:
    """Build the `JobResumed` of the original and the `JobRequested` of its continuation.

    The new job inherits the repository, task, maxTurns, GitHub source and, unless `callback_url`
    is given, the callback URL of the original.
    """
    original = history.request
    requested = JobRequested(
        job_id=new_job_id,
        at=at,
        repository=original.repository,
        task=original.task,
        max_turns=original.max_turns,
        callback_url=callback_url if callback_url is not None else original.callback_url,
        github=original.github,
        resume_of=history.job_id,
        from_turn=from_turn,
        note=note,
    )
    resumed = JobResumed(job_id=history.job_id, at=at, new_job_id=new_job_id, from_turn=from_turn)
    return ResumePlan(resumed=resumed, requested=requested, expected_last=history.last_sequence)


async def commit_resume(store: EventStore, plan: ResumePlan) -> int:
    """Append both events of `plan` in one atomic batch.

    The batch is checked against the original's last sequence and the new job's empty history, so
    of two concurrent resumes of one job exactly one lands; the other raises AppendConflictError.
    """
    return await store.append_batch([(plan.resumed, plan.expected_last), (plan.requested, 0)])


async def append_fact(
    store: EventStore, job_id: str, build: Callable[[JobHistory], Event | None]
) -> tuple[JobHistory | None, int | None]:
    """Append the event `build` makes from the job's current history, re-reading after each conflict.

    For facts recorded after a job's run (callback outcomes, auto-resume decisions): `build` returns
    None when the fact is already in the history or no longer applies, which makes the append
    idempotent across redeliveries and concurrent writers. Returns the history the decision was made
    on (None when the job is gone) and the new event's sequence (None when nothing was appended).
    """
    for _ in range(_MAX_FACT_ATTEMPTS):
        history = await load_job(store, job_id)
        if history is None:
            return None, None
        event = build(history)
        if event is None:
            return history, None
        try:
            sequence = await store.append(event, expected_last=history.last_sequence)
        except AppendConflictError:
            log.debug("job %s: history moved while recording a fact; re-reading it", job_id)
            continue
        return history, sequence
    raise StoreError(f"job {job_id}: history kept changing over {_MAX_FACT_ATTEMPTS} attempts to record a fact")


async def chain_links(checkpoint: Checkpoint, lookup: Callable[[str], Awaitable[Checkpoint | None]]) -> int:
    """Count the `resumeOf` links from the job back to the first job of its chain.

    A link to a job whose checkpoint is gone (deleted) still counts, and ends the walk.
    """
    links = 0
    current: Checkpoint | None = checkpoint
    while current is not None and current.resume_of is not None and links < _MAX_CHAIN:
        links += 1
        current = await lookup(current.resume_of)
    return links
