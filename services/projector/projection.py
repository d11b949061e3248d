"""Applying one stored event to the checkpoint bucket: the step the live projector and a rebuild share."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts import topology
from contracts.checkpoint import Checkpoint
from contracts.codec import EventDecodeError, decode_event
from contracts.events import CheckpointDeleted, Event
from services.common.clock import now_iso
from services.common.fold import evolve, mark_history_error

__all__ = [
    "OutOfOrderError",
    "apply_event",
    "apply_history_error",
    "project_message",
    "report_undecodable",
]

log = logging.getLogger(__name__)

_DELETED_OPERATIONS = frozenset({"DEL", "PURGE"})
_PREVIOUS_HEADER = "Nats-Expected-Last-Subject-Sequence"
_MAX_ORDER_WAITS = 20
"""Deliveries an event waits for its predecessor before it is applied without the order check."""


class OutOfOrderError(Exception):
    """The event arrived before an earlier event of its job was applied; retry it after that one."""

    def __init__(self, job_id: str, sequence: int, previous: int, applied: int) -> None:
        self.job_id = job_id
        self.sequence = sequence
        self.previous = previous
        self.applied = applied
        super().__init__(
            f"event {sequence} of job {job_id} follows event {previous}, but the checkpoint has only "
            f"applied up to {applied}; redeliver it after the missing event"
        )


async def apply_event(
    checkpoints: KeyValue, event: Event, sequence: int, *, previous: int | None = None, enforce: bool = True
) -> None:
    """Fold one event into its job's checkpoint with revision-checked writes, re-reading on conflict.

    `previous` is the sequence of the job's event before this one, when known; an event whose
    predecessor is not applied yet raises OutOfOrderError instead of being skipped for good.
    `enforce=False` applies it anyway, for an event redelivered so often that its predecessor
    cannot be coming (a first event that was unreadable, for example).
    """
    change = _ordered(
        event.job_id, sequence, previous if enforce else None, lambda current: evolve(current, event, sequence)
    )
    await _update(checkpoints, event.job_id, change, tombstone=isinstance(event, CheckpointDeleted))


async def apply_history_error(
    checkpoints: KeyValue,
    job_id: str,
    detail: str,
    sequence: int,
    *,
    previous: int | None = None,
    enforce: bool = True,
) -> None:
    """Mark the job's checkpoint with the unreadable event at `sequence`, so `canResume` can say why."""
    change = _ordered(
        job_id, sequence, previous if enforce else None, lambda current: mark_history_error(current, detail, sequence)
    )
    await _update(checkpoints, job_id, change)


def _ordered(
    job_id: str, sequence: int, previous: int | None, change: Callable[[Checkpoint | None], Checkpoint | None]
) -> Callable[[Checkpoint | None], Checkpoint | None]:
    def guarded(current: Checkpoint | None) -> Checkpoint | None:
        applied = current.last_sequence if current is not None else 0
        # A job with no checkpoint yet has applied nothing: an event that follows another must wait
        # for it, or an overtaken first request would be lost for good.
        if previous is not None and applied < previous < sequence:
            raise OutOfOrderError(job_id, sequence, previous, applied)
        return change(current)

    return guarded


async def project_message(
    checkpoints: KeyValue, message: Msg, *, dead_letters: Client | None
) -> tuple[str, Event | None]:
    """Apply one consumed stream message; return its job id and the decoded event (None when undecodable).

    An undecodable event is never skipped silently: it marks the job's checkpoint, and when
    `dead_letters` is given it is also published to the dead-letter subject with an alert.
    """
    sequence = message.metadata.sequence.stream
    job_id = topology.job_id_from_subject(message.subject)
    # The event store appends with the job's previous sequence as the expected last one, so the
    # stored header names the event this one must follow.
    header = (message.headers or {}).get(_PREVIOUS_HEADER)
    previous = int(header) if header is not None and header.isdigit() else None
    # After many redeliveries the predecessor cannot be coming (it was unreadable or purged): apply anyway.
    enforce = message.metadata.num_delivered <= _MAX_ORDER_WAITS
    try:
        event = decode_event(message.data, sequence=sequence)
    except EventDecodeError as exc:
        await apply_history_error(
            checkpoints, job_id, exc.history_error(), sequence, previous=previous, enforce=enforce
        )
        if dead_letters is not None and message.metadata.num_delivered <= 1:
            await report_undecodable(dead_letters, message, job_id, exc)
        return job_id, None
    await apply_event(checkpoints, event, sequence, previous=previous, enforce=enforce)
    return job_id, event


async def report_undecodable(nc: Client, message: Msg, job_id: str, error: EventDecodeError) -> None:
    """Publish the raw event to the dead-letter subject and a JSON signal to `turnlog.signals.deadletter`."""
    sequence = message.metadata.sequence.stream
    log.error("event %d of job %s on %s cannot be decoded; dead-lettered: %s", sequence, job_id, message.subject, error)
    await nc.publish(
        topology.DEAD_LETTER_SUBJECT,
        message.data,
        headers={
            "Turnlog-Subject": message.subject,
            "Turnlog-Sequence": str(sequence),
            "Turnlog-Error": str(error)[:500],
        },
    )
    alert = {
        "kind": "deadletter",
        "at": now_iso(),
        "jobId": job_id,
        "sequence": sequence,
        "subject": message.subject,
        "errorKind": error.kind,
        "tag": error.tag,
        "error": error.history_error()[:500],
    }
    await nc.publish(topology.DEAD_LETTER_ALERT_SUBJECT, json.dumps(alert).encode())


async def _update(
    checkpoints: KeyValue,
    key: str,
    change: Callable[[Checkpoint | None], Checkpoint | None],
    *,
    tombstone: bool = False,
) -> None:
    while True:
        revision, current, deleted = await _read(checkpoints, key)
        if deleted:
            # The job's checkpoint was deleted: a late redelivery of one of its older events must not
            # bring it back. Job ids are never reused, so nothing new can arrive for this key.
            return

        updated = change(current)
        if updated is current and not (tombstone and current is None):
            return
        try:
            if updated is None:
                # A deletion always leaves a delete marker, even for a job never projected, so an
                # older event of that job still in flight cannot create the checkpoint again.
                if revision is not None or tombstone:
                    await checkpoints.delete(key, last=revision)
                return
            payload = msgspec.json.encode(updated)
            if revision is None:
                await checkpoints.create(key, payload)
            else:
                await checkpoints.update(key, payload, last=revision)
            return
        except KeyWrongLastSequenceError:
            # Another projector wrote the key first: re-read its value and apply the change on top.
            continue


async def _read(checkpoints: KeyValue, key: str) -> tuple[int | None, Checkpoint | None, bool]:
    try:
        entry = await checkpoints.get(key)
    except KeyNotFoundError as exc:
        return None, None, getattr(exc, "op", None) in _DELETED_OPERATIONS
    return entry.revision, msgspec.json.decode(entry.value or b"", type=Checkpoint), False
