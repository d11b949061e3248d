"""Reading job state for the API: checkpoints from KV, live status from leases, history as the fallback."""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.checkpoint import Checkpoint
from contracts.lease import Lease
from services.common.clock import now, parse_iso
from services.common.fold import static_resume_decision
from services.common.history import HistoryError, load_job
from services.common.kvkeys import bucket_keys
from services.common.runtime import Runtime
from services.projector.generations import checkpoint_bucket

__all__ = ["active_checkpoints", "list_checkpoints", "live_view", "live_views", "read_checkpoint"]


async def active_checkpoints(runtime: Runtime) -> KeyValue:
    """Open the checkpoint bucket of the active projection generation (it changes after a rebuild)."""
    return await checkpoint_bucket(runtime.js)


async def read_checkpoint(runtime: Runtime, job_id: str) -> Checkpoint | None:
    """Return the job's checkpoint, folding its history when the projection has not caught up yet."""
    stored = await _get(await active_checkpoints(runtime), job_id)
    if stored is not None:
        return stored
    try:
        history = await load_job(runtime.store, job_id)
    except HistoryError:
        return None
    return history.checkpoint if history else None


async def list_checkpoints(runtime: Runtime) -> list[Checkpoint]:
    """Return every checkpoint, newest first."""
    checkpoints_bucket = await active_checkpoints(runtime)
    keys = await bucket_keys(checkpoints_bucket)
    found = await asyncio.gather(*(_get(checkpoints_bucket, key) for key in keys))
    checkpoints = [checkpoint for checkpoint in found if checkpoint is not None]
    return sorted(checkpoints, key=lambda checkpoint: checkpoint.created_at, reverse=True)


async def live_views(runtime: Runtime, *, status: str | None = None) -> list[Checkpoint]:
    """Return every checkpoint with its live status, newest first, optionally only those with `status`."""
    moment = now()
    views = [await live_view(runtime, checkpoint, moment=moment) for checkpoint in await list_checkpoints(runtime)]
    return views if status is None else [view for view in views if view.job_status == status]


async def live_view(runtime: Runtime, checkpoint: Checkpoint, *, moment: datetime | None = None) -> Checkpoint:
    """Overlay what events cannot know: a running job whose runner's lease expired is `unknown`.

    An `unknown` job can be resumed (unless it has no turns left or an unreadable history): the
    resume appends `job.resumed` to its history, so a runner that picks its work item up later sees
    it is resumed and leaves it alone.
    """
    if checkpoint.job_status != "running":
        return checkpoint
    lease = await _lease(runtime, checkpoint.job_id)
    current = moment or now()
    if lease is not None and parse_iso(lease.expires_at) > current:
        return checkpoint

    orphaned = msgspec.structs.replace(checkpoint, job_status="unknown")
    if checkpoint.history_error is not None or checkpoint.turns >= checkpoint.max_turns:
        allowed, reason = static_resume_decision(msgspec.structs.replace(checkpoint, job_status="failed"))
        return msgspec.structs.replace(orphaned, can_resume=allowed, can_resume_reason=reason)
    expired = f" (its lease expired at {lease.expires_at})" if lease is not None else ""
    return msgspec.structs.replace(
        orphaned,
        can_resume=True,
        can_resume_reason=(
            f"job {checkpoint.job_id} stopped reporting at turn {checkpoint.turns}{expired}; "
            f"its runner is gone, so resume it to continue from turn {checkpoint.turns}"
        ),
    )


async def _get(checkpoints: KeyValue, key: str) -> Checkpoint | None:
    try:
        entry = await checkpoints.get(key)
    except KeyNotFoundError:
        return None
    return msgspec.json.decode(entry.value or b"", type=Checkpoint)


async def _lease(runtime: Runtime, job_id: str) -> Lease | None:
    try:
        entry = await runtime.leases.get(job_id)
    except KeyNotFoundError:
        return None
    return msgspec.json.decode(entry.value or b"", type=Lease)
