"""The projector service: a durable consumer over all events that keeps checkpoints exact and idempotent."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts import topology
from contracts.checkpoint import Checkpoint
from contracts.codec import EventDecodeError, decode_event
from contracts.events import Event
from services.common.fold import evolve
from services.common.store import EventStore

__all__ = ["ProjectorService", "apply_event"]

log = logging.getLogger(__name__)

_BATCH = 256


class ProjectorService:
    """Applies events in stream order; tracks the last applied sequence per job so replays change nothing."""

    def __init__(self, *, store: EventStore, consumer: str = topology.PROJECTOR_CONSUMER) -> None:
        self._store = store
        self._consumer = consumer
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume until `stop` is called."""
        js = self._store.js
        config = ConsumerConfig(
            durable_name=self._consumer,
            filter_subject=topology.EVENTS_SUBJECTS,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=-1,
        )
        await js.add_consumer(topology.EVENTS_STREAM, config=config)
        subscription = await js.pull_subscribe_bind(self._consumer, topology.EVENTS_STREAM)
        checkpoints = await js.key_value(topology.CHECKPOINT_BUCKET)
        log.info("projector started on consumer %s", self._consumer)

        while not self._stopping.is_set():
            try:
                messages = await subscription.fetch(_BATCH, timeout=1.0)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                log.exception("fetching events failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                await self._project(checkpoints, message)

    def stop(self) -> None:
        """Ask the consume loop to end after its current batch."""
        self._stopping.set()

    async def _project(self, checkpoints: KeyValue, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            event = decode_event(message.data, sequence=sequence)
        except EventDecodeError as exc:
            # Give up on this event (it will not decode on a retry either) but keep it visible.
            log.error("event %d on %s cannot be decoded; dead-lettered: %s", sequence, message.subject, exc)
            await self._store.nc.publish(
                topology.DEAD_LETTER_SUBJECT,
                message.data,
                headers={
                    "Turnlog-Subject": message.subject,
                    "Turnlog-Sequence": str(sequence),
                    "Turnlog-Error": str(exc)[:500],
                },
            )
            await message.ack()
            return
        try:
            await apply_event(checkpoints, event, sequence)
        except Exception:
            # Retry later: the event is fine, the KV write failed (a restarting server, a timeout).
            log.exception("event %d of job %s not projected; retrying in 1s", sequence, event.job_id)
            await message.nak(delay=1.0)
            return
        await message.ack()


async def apply_event(checkpoints: KeyValue, event: Event, sequence: int) -> None:
    """Fold one event into its job's checkpoint with revision-checked writes, re-reading on conflict."""
    key = event.job_id
    while True:
        try:
            entry = await checkpoints.get(key)
            revision: int | None = entry.revision
            current: Checkpoint | None = msgspec.json.decode(entry.value or b"", type=Checkpoint)
        except KeyNotFoundError:
            revision, current = None, None

        updated = evolve(current, event, sequence)
        if updated is current:
            return
        try:
            if updated is None:
                if revision is not None:
                    await checkpoints.delete(key, last=revision)
                return
            payload = msgspec.json.encode(updated)
            if revision is None:
                await checkpoints.create(key, payload)
            else:
                await checkpoints.update(key, payload, last=revision)
            return
        except KeyWrongLastSequenceError:
            continue
