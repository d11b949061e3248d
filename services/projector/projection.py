"""Applying one stored event to the checkpoint bucket: the step the live projector and a rebuild share."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

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
from services.common.store import EventStore

__all__ = [
    "OutOfOrderError",
    "apply_event",
    "apply_history_error",
    "fold_stored_history",
    "project_message",
    "report_undecodable",
]

log = logging.getLogger(__name__)

_DELETED_OPERATIONS = frozenset({"DEL", "PURGE"})
_PREVIOUS_HEADER = "Nats-Expected-Last-Subject-Sequence"


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


async def apply_event(checkpoints: KeyValue, event: Event, sequence: int, *, previous: int | None = None) -> None:
    """Fold one event into its job's checkpoint with revision-checked writes, re-reading on conflict.

    `previous` is the sequence of the job's event before this one, when known. An event whose
    predecessor is not applied yet raises OutOfOrderError instead of being skipped for good.
    """
    change = _ordered(event.job_id, sequence, previous, lambda current: evolve(current, event, sequence))
    await _update(checkpoints, event.job_id, change, tombstone=isinstance(event, CheckpointDeleted))


async def apply_history_error(
    checkpoints: KeyValue,
    job_id: str,
    detail: str,
    sequence: int,
    *,
    previous: int | None = None,
) -> None:
    """Mark the job's checkpoint with the unreadable event at `sequence`, so `canResume` can say why."""
    change = _ordered(job_id, sequence, previous, lambda current: mark_history_error(current, detail, sequence))
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
    checkpoints: KeyValue, message: Msg, *, store: EventStore, dead_letters: Client | None
) -> tuple[str, Event | None]:
    """Apply one consumed stream message; return its job id and the decoded event (None when undecodable).

    An undecodable event is never skipped silently: it marks the job's checkpoint, and when
    `dead_letters` is given it is also published to the dead-letter subject with an alert. An event
    that arrives before its predecessor was applied (two projectors share the consumer, or a
    redelivery overtook it) is applied by folding the job's events from `store` up to it.
    """
    sequence = message.metadata.sequence.stream
    job_id = topology.job_id_from_subject(message.subject)
    # The event store appends with the job's previous sequence as the expected last one, so the
    # stored header names the event this one must follow.
    header = (message.headers or {}).get(_PREVIOUS_HEADER)
    previous = int(header) if header is not None and header.isdigit() else None
    try:
        event = decode_event(message.data, sequence=sequence)
    except EventDecodeError as exc:
        marked = apply_history_error(checkpoints, job_id, exc.history_error(), sequence, previous=previous)
        await _in_order(marked, checkpoints, store)
        if dead_letters is not None and message.metadata.num_delivered <= 1:
            await report_undecodable(dead_letters, message, job_id, exc)
        return job_id, None
    await _in_order(apply_event(checkpoints, event, sequence, previous=previous), checkpoints, store)
    return job_id, event


async def _in_order(apply: Awaitable[None], checkpoints: KeyValue, store: EventStore) -> None:
    try:
        await apply
    except OutOfOrderError as exc:
        if not await fold_stored_history(checkpoints, store, exc.job_id, exc.sequence, exc.previous):
            raise
        log.info(
            "event %d of job %s arrived before event %d was applied; folded the job's stored history up to it",
            exc.sequence,
            exc.job_id,
            exc.previous,
        )


async def fold_stored_history(
    checkpoints: KeyValue, store: EventStore, job_id: str, sequence: int, previous: int
) -> bool:
    """Write the job's checkpoint as the fold of its stored events up to `sequence`, unless it is already past it.

    Returns False, writing nothing, when the read lacks `previous` or `sequence`: a follower that
    lags the stream leader can serve such a read, and the caller retries later.
    """
    stored = [item for item in await store.read(job_id) if item.sequence <= sequence]
    present = {item.sequence for item in stored}
    deleted = any(isinstance(item.event, CheckpointDeleted) for item in stored)
    # A deletion purges the events before its tombstone, so only then may the predecessor be missing.
    if sequence not in present or (previous not in present and not deleted):
        return False

    def change(current: Checkpoint | None) -> Checkpoint | None:
        if current is not None and current.last_sequence >= sequence:
            return current
        state: Checkpoint | None = None
        for item in stored:
            if item.event is not None:
                state = evolve(state, item.event, item.sequence)
            elif item.error is not None:
                state = mark_history_error(state, item.error.history_error(), item.sequence)
        return state

    await _update(checkpoints, job_id, change, tombstone=deleted)
    return True


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
