"""The bounded log of request bodies that `GET /_sim/requests` returns."""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["RequestLog"]


class RequestLog:
    """The most recent request bodies, oldest first, safe to share between threads."""

    def __init__(self, max_entries: int) -> None:
        self._lock = threading.Lock()
        self._entries: deque[object] = deque(maxlen=max_entries)

    def append(self, body: object) -> None:
        """Record one body, dropping the oldest when the log is full."""
        with self._lock:
            self._entries.append(body)

    def entries(self) -> list[object]:
        """Return a copy of the logged bodies, most recent last."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> int:
        """Forget every logged body and return how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count
