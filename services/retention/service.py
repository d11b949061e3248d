"""Applying the retention policy: now (`POST /cleanup`, `turnlog cleanup`) or periodically (the service)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from services.api.state import list_checkpoints, live_view
from services.common.clock import now
from services.common.deletion import DeletionError, delete_job
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.retention.policy import RetentionWindows, select_expired

__all__ = ["RetentionService", "apply_retention", "windows_of"]

log = logging.getLogger(__name__)


def windows_of(settings: Settings) -> RetentionWindows:
    """Return the retention windows configured by TURNLOG_RETENTION_COMPLETED and TURNLOG_RETENTION_OTHER."""
    return RetentionWindows(completed=settings.retention_completed, other=settings.retention_other)


async def apply_retention(
    runtime: Runtime, windows: RetentionWindows, *, moment: datetime, dry_run: bool
) -> dict[str, Any]:
    """Delete (or, with `dry_run`, only list) every job the policy selects at `moment`.

    Returns the report `POST /cleanup` answers: `jobs` lists each selected job with `deleted` telling
    whether it is gone now, and `skipped` lists jobs kept and why.
    """
    live = partial(live_view, runtime, moment=moment)
    views = [await live(checkpoint) for checkpoint in await list_checkpoints(runtime)]
    expired, held = select_expired(views, moment, windows)

    jobs: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = [{"jobId": item.job_id, "reason": item.reason} for item in held]
    for chain in expired:
        # The last job first: if this stops halfway, every job left still has its whole lineage.
        for index, view in enumerate([chain.job, *chain.ancestors]):
            reason = chain.reason if index == 0 else f"resumed as job {chain.job.job_id}, which the policy deletes"
            entry: dict[str, Any] = {
                "jobId": view.job_id,
                "jobStatus": view.job_status,
                "lastUpdated": view.last_updated,
                "reason": reason,
                "deleted": False,
            }
            if not dry_run:
                try:
                    await delete_job(runtime.store, view.job_id, reason="retention", live=live)
                except DeletionError as exc:
                    log.warning("retention kept job %s: %s", view.job_id, exc)
                    skipped.append({"jobId": view.job_id, "reason": str(exc)})
                    break
                entry["deleted"] = True
            jobs.append(entry)
    return {
        "dryRun": dry_run,
        "policy": {"completedSeconds": windows.completed, "otherSeconds": windows.other},
        "jobs": jobs,
        "skipped": skipped,
    }


class RetentionService:
    """Applies the retention policy every TURNLOG_RETENTION_INTERVAL seconds."""

    def __init__(self, *, runtime: Runtime, settings: Settings, clock: Callable[[], datetime] = now) -> None:
        self._runtime = runtime
        self._settings = settings
        self._clock = clock
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Apply the policy at start and then every interval, until `stop` is called."""
        windows = windows_of(self._settings)
        log.info(
            "retention started: completed jobs after %.0fs, failed/cancelled/unknown after %.0fs, every %.0fs",
            windows.completed,
            windows.other,
            self._settings.retention_interval,
        )
        while not self._stopping.is_set():
            try:
                report = await apply_retention(self._runtime, windows, moment=self._clock(), dry_run=False)
            except Exception:
                # Retry at the next interval: nothing was half-done that a later run cannot finish.
                log.exception("retention run failed; retrying in %.0fs", self._settings.retention_interval)
            else:
                if report["jobs"] or report["skipped"]:
                    log.info("retention deleted %d jobs, kept %d", len(report["jobs"]), len(report["skipped"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.retention_interval)

    def stop(self) -> None:
        """Ask the loop to end; a run in progress finishes first."""
        self._stopping.set()
