"""POSTing one callback with retries: exponential backoff with jitter, `retry-after`, and a deadline."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

__all__ = ["CallbackDeliverer", "DeliveryOutcome", "redact_url", "retry_after_seconds"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """The outcome of one callback: accepted (with its HTTP status) or given up (with the last error)."""

    delivered: bool
    attempts: int
    status: int | None
    last_error: str


class _Permanent(Exception):
    """A failure that another attempt cannot fix."""


class _Transient(Exception):
    """A failure worth another attempt; `retry_after` is the delay the receiver requested, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class CallbackDeliverer:
    """Delivers callbacks with one shared HTTP client; time, sleep and jitter are injectable for tests."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        deadline: float,
        backoff: float,
        backoff_max: float,
        allow_private: bool,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._deadline = deadline
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._allow_private = allow_private
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    async def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryOutcome:
        """POST `body` until a 2xx response, a permanent failure, or the deadline.

        Retries network errors, timeouts, 408, 425, 429 and 5xx; a 429 or 503 `retry-after` sets the
        next delay. Other responses (3xx, 4xx) are permanent: callbacks do not follow redirects.
        """
        give_up_at = self._clock() + self._deadline
        attempts = 0
        while True:
            attempts += 1
            try:
                status = await self._attempt(url, body, {**headers, "X-Turnlog-Attempt": str(attempts)})
            except _Permanent as exc:
                log.warning("callback to %s failed permanently on attempt %d: %s", redact_url(url), attempts, exc)
                return DeliveryOutcome(delivered=False, attempts=attempts, status=None, last_error=str(exc))
            except _Transient as exc:
                delay = exc.retry_after if exc.retry_after is not None else self._backoff_delay(attempts)
                if self._clock() + delay > give_up_at:
                    log.warning(
                        "callback to %s failed after %d attempts, deadline of %.0fs reached: %s",
                        redact_url(url),
                        attempts,
                        self._deadline,
                        exc,
                    )
                    return DeliveryOutcome(delivered=False, attempts=attempts, status=None, last_error=str(exc))
                log.info(
                    "callback to %s failed on attempt %d (%s); retrying in %.2fs", redact_url(url), attempts, exc, delay
                )
                await self._sleep(delay)
                continue
            return DeliveryOutcome(delivered=True, attempts=attempts, status=status, last_error="")

    def _backoff_delay(self, attempts: int) -> float:
        # Equal jitter: half the exponential step for sure, the other half at random, so that callbacks
        # failing together do not retry together.
        step = float(min(self._backoff_max, self._backoff * 2 ** (attempts - 1)))
        return step / 2 + step / 2 * self._jitter()

    async def _attempt(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        await self._check_address(url)
        try:
            response = await self._client.post(url, content=body, headers=dict(headers))
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return status
        detail = f"the receiver answered {status}"
        if status in _RETRY_STATUSES:
            wait = retry_after_seconds(response.headers) if status in _RETRY_AFTER_STATUSES else None
            raise _Transient(detail, retry_after=wait)
        if 300 <= status < 400:
            raise _Permanent(f"{detail} (a redirect); callbacks do not follow redirects, so give the final URL")
        raise _Permanent(detail)

    async def _check_address(self, url: str) -> None:
        """Reject URLs whose host resolves to a loopback, link-local or private address, unless allowed.

        NOTE: the HTTP client resolves the name again, so a DNS answer that changes between the two
        lookups is not caught here.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Permanent(f"invalid callback URL {redact_url(url)!r}: expected http(s)://host/...")
        if self._allow_private:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port)
        except OSError as exc:
            raise _Transient(f"cannot resolve {parts.hostname}: {exc}") from exc
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address.is_loopback or address.is_link_local or address.is_private or address.is_unspecified:
                raise _Permanent(
                    f"callback host {parts.hostname} resolves to the non-public address {address}; "
                    "set TURNLOG_ALLOW_PRIVATE_CALLBACKS=1 to allow it"
                )


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Read `retry-after` as seconds or as an HTTP date; None when absent or unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


def redact_url(url: str) -> str:
    """Return `url` without credentials, query or fragment, which may carry tokens, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"
