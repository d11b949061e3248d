"""`GET /stats`: the checkpoint health numbers, computed from the live checkpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, get

from contracts.checkpoint import JOB_STATUSES, Checkpoint
from services.api.state import list_checkpoints, live_view
from services.common.clock import now, parse_iso, to_iso
from services.common.runtime import Runtime

__all__ = ["OLD_AFTER_SECONDS", "checkpoint_stats", "compute_stats"]

OLD_AFTER_SECONDS = 3600
NEAR_MAX_RATIO = 0.9


def compute_stats(views: list[Checkpoint], moment: datetime) -> dict[str, Any]:
    """Count checkpoints: all, older than 1 h by lastUpdated, at 90% of maxTurns or more, and by status.

    `failed` counts jobs whose status is failed now; `resumed` counts jobs superseded by a resume.
    """
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    old = near_max = 0
    for view in views:
        by_status[view.job_status] = by_status.get(view.job_status, 0) + 1
        if (moment - parse_iso(view.last_updated)).total_seconds() > OLD_AFTER_SECONDS:
            old += 1
        if view.turns >= view.max_turns * NEAR_MAX_RATIO:
            near_max += 1
    return {
        "total": len(views),
        "oldCheckpoints": old,
        "nearMaxTurns": near_max,
        "failed": by_status["failed"],
        "resumed": by_status["resumed"],
        "unknown": by_status["unknown"],
        "byStatus": by_status,
        "oldAfterSeconds": OLD_AFTER_SECONDS,
        "at": to_iso(moment),
    }


@get("/stats", summary="Checkpoint health: total, old, near max turns, failed, resumed, by status")
async def checkpoint_stats(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Return the health numbers of every checkpoint, with live statuses (`unknown` for orphaned jobs)."""
    runtime: Runtime = request.app.state.runtime
    moment = now()
    views = [await live_view(runtime, checkpoint, moment=moment) for checkpoint in await list_checkpoints(runtime)]
    return compute_stats(views, moment)
