"""Stream, subject, consumer and KV bucket names: the one place that defines turnlog's NATS layout."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHECKPOINT_BUCKET",
    "DEAD_LETTER_SUBJECT",
    "EVENTS_STREAM",
    "EVENT_KINDS",
    "LEASE_BUCKET",
    "PROJECTOR_CONSUMER",
    "RUNNER_CONSUMER",
    "event_subject",
    "job_filter",
    "job_id_from_subject",
]

EVENTS_STREAM: Final = "TURNLOG_EVENTS"
"""Every job's history. A job owns the subjects `turnlog.events.<jobId>.<kind>`."""

EVENTS_SUBJECTS: Final = "turnlog.events.>"

EVENT_KINDS: Final[dict[str, str]] = {
    "job.requested.v1": "requested",
    "job.started.v1": "started",
    "turn.completed.v1": "turn",
    "job.failed.v1": "failed",
    "job.completed.v1": "completed",
    "job.cancel_requested.v1": "cancel",
    "job.cancelled.v1": "cancelled",
    "job.resumed.v1": "resumed",
    "checkpoint.deleted.v2": "deleted",
    "callback.delivered.v1": "callback_delivered",
    "callback.failed.v1": "callback_failed",
    "autoresume.decided.v1": "autoresume",
}
"""The last subject token for each event tag, so consumers can filter by kind without decoding."""

WORK_FILTER: Final = "turnlog.events.*.requested"
"""A job request is also the work item: runners consume exactly these subjects."""

RUNNER_CONSUMER: Final = "runner"
PROJECTOR_CONSUMER: Final = "projector"

DEAD_LETTER_SUBJECT: Final = "turnlog.deadletter"
"""Core NATS subject where consumers report events they cannot decode."""

CHECKPOINT_BUCKET: Final = "turnlog-checkpoints"
"""Checkpoints of projection generation 0; a rebuild writes generation N to `turnlog-checkpoints-N`."""

PROJECTION_BUCKET: Final = "turnlog-projection"
"""Contains the `checkpoints` key: which checkpoint bucket and projector consumer are active."""

DEAD_LETTER_ALERT_SUBJECT: Final = "turnlog.signals.deadletter"
"""Core NATS subject that receives one JSON signal per event the projector cannot decode."""

LEASE_BUCKET: Final = "turnlog-leases"
FLOOD_BUCKET: Final = "turnlog-flood"
"""Recent job start times per issue, for the gateway's flood guard; not part of any job's history."""

FLOOD_ALERT_SUBJECT: Final = "turnlog.signals.flood"

ALERT_BUCKET: Final = "turnlog-alerts"
"""When each alert (rule and subject) was last sent, so every alerts process and restart skips repeats."""

ALERT_BUCKET_TTL_SECONDS: Final = 7 * 86400
"""How long the alert bucket keeps an entry: the longest deduplication window it supports."""


def event_subject(job_id: str, tag: str) -> str:
    """Build the subject an event with `tag` is appended to."""
    return f"turnlog.events.{job_id}.{EVENT_KINDS[tag]}"


def job_filter(job_id: str) -> str:
    """Build the wildcard that matches every event of one job."""
    return f"turnlog.events.{job_id}.>"


def job_id_from_subject(subject: str) -> str:
    """Extract the job id from an event subject."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["turnlog", "events"]:
        raise ValueError(f"not a turnlog event subject: {subject!r}; expected turnlog.events.<jobId>.<kind>")
    return parts[2]
