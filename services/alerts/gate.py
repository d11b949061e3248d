"""Alert deduplication shared by every alerts process through a KV bucket, so restarts and replicas send once."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.alerts.rules import Alert, AlertGate
from services.common.clock import parse_iso, to_iso

__all__ = ["SharedAlertGate", "gate_key"]

log = logging.getLogger(__name__)


def gate_key(alert: Alert) -> str:
    """Return the bucket key of an alert's rule and subject; subjects such as `owner/repo#42` are hashed."""
    digest = hashlib.sha256(alert.key.encode()).hexdigest()[:32]
    return f"{alert.rule}.{digest}"


class SharedAlertGate:
    """Admits an alert unless any process sent the same rule and subject within the window.

    Each key stores the moment the alert was last sent. Writes are revision-checked, so when two
    processes evaluate the same condition at once, only the first write admits its alert. When the
    bucket cannot be reached the gate falls back to this process's memory: a repeated alert is
    better than a lost one.
    """

    def __init__(self, bucket: KeyValue, window: float) -> None:
        self._bucket = bucket
        self._window = timedelta(seconds=window)
        self._fallback = AlertGate(window)

    async def admit(self, alert: Alert, moment: datetime) -> bool:
        """Record and admit `alert`, or reject it as a repeat inside the window."""
        key = gate_key(alert)
        try:
            return await self._admit(key, moment)
        except KeyWrongLastSequenceError:
            # Another alerts process recorded the same alert first, so it sends it.
            return False
        except Exception as exc:
            log.warning("alert bucket unavailable (%r); deduplicating %s in memory", exc, alert.rule)
            return self._fallback.admit(alert, moment)

    async def _admit(self, key: str, moment: datetime) -> bool:
        stamp = to_iso(moment).encode()
        try:
            entry = await self._bucket.get(key)
        except KeyNotFoundError:
            await self._bucket.create(key, stamp)
            return True
        last = _parse(entry.value)
        if last is not None and moment - last < self._window:
            return False
        await self._bucket.update(key, stamp, last=entry.revision)
        return True


def _parse(value: bytes | None) -> datetime | None:
    try:
        return parse_iso((value or b"").decode())
    except ValueError:
        # An unreadable stamp is treated as expired: the alert is sent and the stamp rewritten.
        return None
