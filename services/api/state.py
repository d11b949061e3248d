"""Reading job state for the API: checkpoints from KV, live status from leases, history as the fallback."""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from nats.js.errors import KeyNotFoundError, NoKeysError

from contracts.checkpoint import Checkpoint
from contracts.lease import Lease
from services.common.clock import now, parse_iso
from services.common.fold import static_resume_decision
from services.common.history import HistoryError, load_job
from services.common.runtime import Runtime

__all__ = ["list_checkpoints", "live_view", "read_checkpoint"]


async def read_checkpoint(runtime: Runtime, job_id: str) -> Checkpoint | None:
    """Return the job's checkpoint, folding its history when the projection has not caught up yet."""
    try:
        entry = await runtime.checkpoints.get(job_id)
        stored = msgspec.json.decode(entry.value or b"", type=Checkpoint)
    except KeyNotFoundError:
        stored = None
    if stored is not None:
        return stored
    try:
        history = await load_job(runtime.store, job_id)
    except HistoryError:
        return None
    return history.checkpoint if history else None


async def list_checkpoints(runtime: Runtime) -> list[Checkpoint]:
    """Return every checkpoint, newest first."""
    try:
        keys = await runtime.checkpoints.keys()
    except NoKeysError:
        return []
    found = await asyncio.gather(*(_get(runtime, key) for key in keys))
    checkpoints = [checkpoint for checkpoint in found if checkpoint is not None]
    return sorted(checkpoints, key=lambda checkpoint: checkpoint.created_at, reverse=True)


async def live_view(runtime: Runtime, checkpoint: Checkpoint, *, moment: datetime | None = None) -> Checkpoint:
    """Overlay what events cannot know: a running job whose runner's lease expired is `unknown`."""
    if checkpoint.job_status != "running":
        return checkpoint
    lease = await _lease(runtime, checkpoint.job_id)
    current = moment or now()
    if lease is not None and parse_iso(lease.expires_at) > current:
        return checkpoint
    orphaned = msgspec.structs.replace(checkpoint, job_status="unknown")
    return msgspec.structs.replace(
        orphaned,
        can_resume=checkpoint.turns < checkpoint.max_turns,
        can_resume_reason=(
            f"job {checkpoint.job_id} stopped reporting at turn {checkpoint.turns}; its runner is gone"
            if checkpoint.turns < checkpoint.max_turns
            else static_resume_decision(msgspec.structs.replace(checkpoint, job_status="failed"))[1]
        ),
    )


async def _get(runtime: Runtime, key: str) -> Checkpoint | None:
    try:
        entry = await runtime.checkpoints.get(key)
    except KeyNotFoundError:
        return None
    return msgspec.json.decode(entry.value or b"", type=Checkpoint)


async def _lease(runtime: Runtime, job_id: str) -> Lease | None:
    try:
        entry = await runtime.leases.get(job_id)
    except KeyNotFoundError:
        return None
    return msgspec.json.decode(entry.value or b"", type=Lease)
