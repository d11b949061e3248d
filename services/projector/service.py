"""The projector service: a durable consumer over all events that keeps checkpoints exact and idempotent.

Ordering: the fold skips any event at or below a checkpoint's last applied sequence, so a job's
events must reach its checkpoint in stream order. Each stored event names its predecessor (the
expected-last-sequence header of its append). When an event arrives before that predecessor was
applied, because two processes share the durable or a redelivery was overtaken, the projector
folds the job's stored events up to it instead, and the late predecessor then changes nothing.
Revision-checked writes keep concurrent projectors from overwriting each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError
from nats.js.kv import KeyValue

from contracts import topology
from services.common.store import EventStore
from services.projector.generations import Generation, active_generation, open_bucket
from services.projector.projection import OutOfOrderError, apply_event, apply_history_error, project_message

__all__ = ["ProjectorService", "apply_event", "apply_history_error", "projector_consumer_config"]

log = logging.getLogger(__name__)

BATCH = 256
_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 5.0
_OUT_OF_ORDER_DELAY_SECONDS = 0.1


def projector_consumer_config(name: str) -> ConsumerConfig:
    """Describe a projector's durable consumer: every event from sequence 1, acknowledged per batch."""
    return ConsumerConfig(
        durable_name=name,
        filter_subject=topology.EVENTS_SUBJECTS,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=BATCH,
    )


class _Abandoned(Exception):
    """The current batch is given back: the service is stopping or the active generation changed."""


class ProjectorService:
    """Applies events in stream order into the active generation's bucket, following rebuild switches.

    With `consumer` given, the service is pinned to that durable consumer and to `bucket` (default
    generation 0's bucket) and ignores the generation pointer: tests and side projections use this.
    """

    def __init__(
        self,
        *,
        store: EventStore,
        consumer: str | None = None,
        bucket: str | None = None,
        replicas: int = 1,
    ) -> None:
        self._store = store
        self._pinned = (
            Generation(generation=-1, bucket=bucket or topology.CHECKPOINT_BUCKET, consumer=consumer)
            if consumer is not None
            else None
        )
        self._replicas = replicas
        self._stopping = asyncio.Event()
        self._target: Generation | None = None

    @property
    def generation(self) -> Generation | None:
        """Return the generation the service currently writes, None before it started."""
        return self._target

    async def run(self) -> None:
        """Consume until `stop` is called, switching generation whenever a rebuild moves the pointer."""
        while not self._stopping.is_set():
            try:
                target = self._pinned or (await active_generation(self._store.js))[0]
            except Exception:
                log.exception("reading the active projection generation failed; retrying in 1s")
                await self._pause(1.0)
                continue
            self._target = target
            try:
                await self._consume(target)
            except Exception:
                log.exception("projector on consumer %s failed; restarting in 1s", target.consumer)
                await self._pause(1.0)

    def stop(self) -> None:
        """Ask the consume loop to end after its current batch."""
        self._stopping.set()

    async def _consume(self, target: Generation) -> None:
        js = self._store.js
        await js.add_consumer(topology.EVENTS_STREAM, config=projector_consumer_config(target.consumer))
        subscription = await js.pull_subscribe_bind(target.consumer, topology.EVENTS_STREAM)
        checkpoints = await open_bucket(js, target.bucket, replicas=self._replicas)
        log.info("projector started on consumer %s into bucket %s", target.consumer, target.bucket)
        try:
            while not self._stopping.is_set() and not await self._switched(target):
                try:
                    messages = await subscription.fetch(BATCH, timeout=1.0)
                except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                    continue
                try:
                    await self._project_batch(checkpoints, messages, target)
                except _Abandoned:
                    return
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            log.info("projector stopped on consumer %s", target.consumer)

    async def _project_batch(self, checkpoints: KeyValue, messages: list[Msg], target: Generation) -> None:
        deferred: list[Msg] = []
        for index, message in enumerate(messages):
            try:
                await self._with_retry(checkpoints, message, messages, target)
            except OutOfOrderError as exc:
                # Retry later: the job's earlier event is still on its way (a redelivery overtaken by newer events).
                log.info("%s", exc)
                deferred.append(message)
            except _Abandoned:
                # Applied events are acknowledged; the rest are redelivered, in order, to the next puller.
                for done in messages[:index]:
                    await done.ack()
                for pending in messages[index:]:
                    with contextlib.suppress(Exception):
                        await pending.nak()
                raise
        for message in messages:
            if message in deferred:
                await message.nak(delay=_OUT_OF_ORDER_DELAY_SECONDS)
            else:
                await message.ack()

    async def _with_retry(self, checkpoints: KeyValue, message: Msg, batch: list[Msg], target: Generation) -> None:
        # Retry in place rather than nak: later events of the same job must wait for this one.
        delay = _RETRY_FIRST_SECONDS
        while True:
            try:
                await project_message(checkpoints, message, store=self._store, dead_letters=self._store.nc)
                return
            except OutOfOrderError:
                raise
            except Exception:
                sequence = message.metadata.sequence.stream
                log.exception("event %d on %s not projected; retrying in %.1fs", sequence, message.subject, delay)
            if self._stopping.is_set() or await self._switched(target):
                raise _Abandoned
            for held in batch:
                with contextlib.suppress(Exception):
                    await held.in_progress()
            await self._pause(delay)
            delay = min(delay * 2, _RETRY_MAX_SECONDS)

    async def _switched(self, target: Generation) -> bool:
        if self._pinned is not None:
            return False
        try:
            active, _ = await active_generation(self._store.js)
        except Exception:
            log.warning("reading the projection pointer failed; staying on consumer %s", target.consumer)
            return False
        if active.generation != target.generation:
            log.info("projection switched from generation %d to %d", target.generation, active.generation)
            return True
        return False

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
