"""The per-issue flood guard: at most N jobs per issue within a window, shared by every gateway instance."""

from __future__ import annotations

import json
import logging
import time

import msgspec
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts import topology
from services.common.ids import derived_job_id

__all__ = ["FloodGuard", "admit"]

log = logging.getLogger(__name__)


def admit(starts: list[float], now: float, *, limit: int, window: float) -> tuple[bool, list[float]]:
    """Decide whether one more job may start; return the decision and the start times to keep."""
    recent = [moment for moment in starts if now - moment < window]
    if len(recent) >= limit:
        return False, recent
    return True, [*recent, now]


class FloodGuard:
    """Counts job starts per (repository, issue) in a KV bucket with revision-checked updates."""

    def __init__(self, bucket: KeyValue, nc: Client, *, limit: int, window: float) -> None:
        self._bucket = bucket
        self._nc = nc
        self._limit = limit
        self._window = window

    async def allow(self, repository: str, issue: int) -> bool:
        """Record a job start for the issue unless it already had `limit` within the window."""
        key = derived_job_id("flood", repository.lower(), str(issue))
        for _ in range(20):
            try:
                entry = await self._bucket.get(key)
                revision: int | None = entry.revision
                starts = msgspec.json.decode(entry.value or b"[]", type=list[float])
            except KeyNotFoundError:
                revision, starts = None, []
            allowed, kept = admit(starts, time.time(), limit=self._limit, window=self._window)
            if not allowed:
                await self._alert(repository, issue, len(kept))
                return False
            try:
                if revision is None:
                    await self._bucket.create(key, msgspec.json.encode(kept))
                else:
                    await self._bucket.update(key, msgspec.json.encode(kept), last=revision)
                return True
            except KeyWrongLastSequenceError:
                continue
        # Twenty lost races in a row means a burst far above the limit: treat it as a flood.
        return False

    async def _alert(self, repository: str, issue: int, count: int) -> None:
        log.warning(
            "flood guard: %s#%d started %d jobs within %.0fs; rejecting", repository, issue, count, self._window
        )
        alert = {
            "rule": "webhook_flood",
            "severity": "warning",
            "message": f"{repository}#{issue} started {count} jobs within {self._window:.0f}s",
            "details": {"repository": repository, "issue": issue, "count": count, "windowSeconds": self._window},
        }
        await self._nc.publish(topology.FLOOD_ALERT_SUBJECT, json.dumps(alert).encode())
