"""Time helpers: every timestamp turnlog writes is an RFC 3339 UTC string."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 with millisecond precision and a `Z` suffix."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    """Return the current time as an RFC 3339 UTC string."""
    return to_iso(now())


def parse_iso(text: str) -> datetime:
    """Parse a timestamp written by `to_iso` (or any RFC 3339 string) into an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_millis(stamp: str) -> str:
    """Shorten an RFC 3339 time with any number of fractional digits (NATS sends nanoseconds) to milliseconds."""
    head, dot, rest = stamp.partition(".")
    if not dot:
        return stamp
    count = len(rest) - len(rest.lstrip("0123456789"))
    digits, zone = rest[:count], rest[count:]
    return f"{head}.{(digits + '000')[:3]}{zone}"
