"""The callback document, its delivery id and its signature; pure, no network."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec

from contracts.checkpoint import Checkpoint
from contracts.events import CallbackDelivered, CallbackFailed, Event, JobCancelled, JobCompleted, JobFailed
from services.common.history import JobHistory

__all__ = [
    "TERMINAL_EVENTS",
    "build_document",
    "delivery_id_for",
    "outcome_recorded",
    "sign",
    "terminal_status",
]

TERMINAL_EVENTS = (JobCompleted, JobFailed, JobCancelled)


def terminal_status(event: Event) -> str | None:
    """Return the job status a terminal event sets, None for any other event."""
    if isinstance(event, JobCompleted):
        return "completed"
    if isinstance(event, JobFailed):
        return "failed"
    if isinstance(event, JobCancelled):
        return "cancelled"
    return None


def delivery_id_for(job_id: str, sequence: int) -> str:
    """Return the delivery id of the callback for the terminal event at `sequence`.

    Derived, not random, so every attempt and every redelivery after a restart carries the same id.
    """
    return hashlib.sha256(f"{job_id}:{sequence}".encode()).hexdigest()[:32]


def outcome_recorded(history: JobHistory, delivery_id: str) -> bool:
    """Tell whether the history already holds the outcome of delivery `delivery_id`."""
    return any(
        isinstance(stored.event, CallbackDelivered | CallbackFailed) and stored.event.delivery_id == delivery_id
        for stored in history.events
    )


def build_document(
    *,
    ended: Checkpoint,
    current: Checkpoint,
    status: str,
    delivery_id: str,
    public_url: str,
) -> bytes:
    """Encode the JSON body POSTed to the callback URL.

    `ended` is the job as its terminal event left it; `current` adds what happened since, such as a
    resume (`resumedAs`).
    """
    link = f"{public_url.rstrip('/')}/checkpoints/{ended.job_id}"
    failure: dict[str, Any] | None = msgspec.to_builtins(ended.failure) if ended.failure is not None else None
    document: dict[str, Any] = {
        "jobId": ended.job_id,
        "status": status,
        "turns": ended.turns,
        "maxTurns": ended.max_turns,
        "repository": ended.repository,
        "resumeOf": ended.resume_of,
        "resumedAs": current.resumed_as,
        "fromTurn": ended.from_turn,
        "failure": failure,
        "summary": ended.summary,
        "usage": msgspec.to_builtins(ended.usage),
        "endedAt": ended.last_updated,
        "checkpointUrl": link,
        "deliveryId": delivery_id,
    }
    return msgspec.json.encode(document)


def sign(body: bytes, secret: bytes) -> str:
    """Return the `X-Turnlog-Signature` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
