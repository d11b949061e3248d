"""Fault injection: parse `TURNLOG_SIM_FAULTS` and hand out each planned fault exactly once."""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = ["FaultInjector", "FaultSpec", "FaultSpecError", "parse_fault_specs"]

FaultKind = Literal["status", "overloaded-stream", "max-tokens"]

EXPECTED_FORM = (
    "STATUS@TURN, STATUS:RETRY_AFTER_SECONDS@TURN, overloaded-stream@TURN or max_tokens@TURN "
    "(for example 429@6, 429:1@6, overloaded-stream@3, max_tokens@4), with STATUS between 400 and 599 "
    "and TURN >= 1"
)

_STATUS_ENTRY = re.compile(r"^(?P<status>\d{3})(?::(?P<retry_after>\d+))?@(?P<turn>\d+)$")
_STREAM_ENTRY = re.compile(r"^overloaded-stream@(?P<turn>\d+)$")
_MAX_TOKENS_ENTRY = re.compile(r"^max_tokens@(?P<turn>\d+)$")


class FaultSpecError(ValueError):
    """An entry of the fault list does not have one of the accepted forms."""

    def __init__(self, entry: str, reason: str) -> None:
        self.entry = entry
        self.reason = reason
        super().__init__(f"invalid fault entry {entry!r} in TURNLOG_SIM_FAULTS: {reason}. Expected {EXPECTED_FORM}.")


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    """One planned failure of the first matching request for a turn."""

    turn: int
    kind: FaultKind
    status: int
    retry_after_s: int | None = None


def parse_fault_specs(value: str) -> tuple[FaultSpec, ...]:
    """Parse a comma-separated fault list such as `429@6,500:2@2`; blank entries are ignored."""
    specs: list[FaultSpec] = []
    for raw_entry in value.split(","):
        entry = raw_entry.strip()
        if entry:
            specs.append(_parse_entry(entry))
    return tuple(specs)


def _parse_entry(entry: str) -> FaultSpec:
    stream_match = _STREAM_ENTRY.match(entry)
    if stream_match is not None:
        turn = _parse_turn(entry, stream_match.group("turn"))
        return FaultSpec(turn=turn, kind="overloaded-stream", status=529)

    max_tokens_match = _MAX_TOKENS_ENTRY.match(entry)
    if max_tokens_match is not None:
        # Not an HTTP error: the answer is a 200 whose tool call is cut off at max_tokens.
        turn = _parse_turn(entry, max_tokens_match.group("turn"))
        return FaultSpec(turn=turn, kind="max-tokens", status=200)

    status_match = _STATUS_ENTRY.match(entry)
    if status_match is None:
        raise FaultSpecError(entry, "unrecognised syntax")

    status = int(status_match.group("status"))
    if not 400 <= status <= 599:
        raise FaultSpecError(entry, f"status {status} is not an HTTP error status")

    retry_after = status_match.group("retry_after")
    return FaultSpec(
        turn=_parse_turn(entry, status_match.group("turn")),
        kind="status",
        status=status,
        retry_after_s=int(retry_after) if retry_after is not None else None,
    )


def _parse_turn(entry: str, digits: str) -> int:
    turn = int(digits)
    if turn < 1:
        raise FaultSpecError(entry, "turn numbers start at 1")
    return turn


class FaultInjector:
    """The faults still pending in this process, by turn.

    Several entries for the same turn fire in the order listed, one per request, and a request for
    that turn succeeds once they are used up. A lock guards the queues so that each fault fires once
    even when one app serves requests from several threads or event loops.
    """

    def __init__(self, specs: tuple[FaultSpec, ...]) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, deque[FaultSpec]] = {}
        for spec in specs:
            self._pending.setdefault(spec.turn, deque()).append(spec)

    def take(self, turn: int) -> FaultSpec | None:
        """Remove and return the next pending fault for `turn`, or None when the request should succeed."""
        with self._lock:
            queue = self._pending.get(turn)
            if not queue:
                return None
            return queue.popleft()

    def pending(self) -> tuple[FaultSpec, ...]:
        """Return the faults not yet injected, in turn order."""
        with self._lock:
            return tuple(spec for turn in sorted(self._pending) for spec in self._pending[turn])
