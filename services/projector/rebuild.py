"""Rebuilding every checkpoint from sequence 1 into a fresh bucket and switching to it atomically.

The switch, step by step:

1. Claim the rebuild with a `rebuild` key (created only if absent, expiring after `_CLAIM_SECONDS`
   unless renewed) so two rebuilds never race for the same generation.
2. Create generation N+1: an empty bucket and the durable consumer `projector-gN+1`, which starts
   at sequence 1 and keeps its position on the server.
3. Drain that consumer into the new bucket until nothing is pending, with the same `project_message`
   step the live projector uses. Events appended meanwhile are still applied to generation N by the
   running projector, so readers see no gap.
4. Point the `checkpoints` key at generation N+1 with a revision-checked update. Readers switch on
   their next request. Running projectors see the new pointer after their current batch and bind
   `projector-gN+1`, which still holds every event appended after step 3: none is lost, at worst the
   new bucket lags by the events of that one batch.
5. Delete generation N's consumer (nobody may feed it any more) and generation N-1's bucket. The
   bucket of generation N stays until the next rebuild, so a request that read the old pointer
   still finds its bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import APIError, FetchTimeoutError, KeyWrongLastSequenceError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from contracts import topology
from contracts.checkpoint import Checkpoint
from contracts.codec import EventDecodeError, decode_event
from contracts.events import CheckpointDeleted
from services.common.clock import now_iso
from services.common.fold import evolve, mark_history_error
from services.projector.generations import (
    POINTER_KEY,
    Generation,
    active_generation,
    forget_bucket,
    generation,
    open_bucket,
    pointer_bucket,
)
from services.projector.service import BATCH, projector_consumer_config

__all__ = ["RebuildConflictError", "RebuildReport", "rebuild_projection"]

log = logging.getLogger(__name__)

_CLAIM_KEY = "rebuild"
_CLAIM_SECONDS = 120.0
_CLAIM_RENEW_SECONDS = 30.0
_WRONG_LAST_SEQUENCE = 10071


class RebuildConflictError(Exception):
    """Another rebuild has the claim, or moved the pointer while this one ran."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"cannot rebuild the projection: {detail}; wait for it to finish and retry")


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did: the generation it switched to, how many jobs and events, and how long it took."""

    generation: int
    bucket: str
    previous_generation: int
    jobs: int
    events: int
    seconds: float


async def rebuild_projection(js: JetStreamContext, *, replicas: int = 1) -> RebuildReport:
    """Rebuild every checkpoint from the event log into a new generation and make it the active one."""
    started = time.monotonic()
    pointer = await pointer_bucket(js, replicas=replicas)
    claim = await _claim(pointer)
    try:
        current, revision = await active_generation(js)
        target = generation(current.generation + 1)
        checkpoints = await _fresh_bucket(js, target, replicas)
        events = await _drain(js, checkpoints, target, claim)
        jobs = await _count_keys(checkpoints)

        switched = generation(target.generation, switched_at=now_iso())
        try:
            if revision is None:
                await pointer.create(POINTER_KEY, msgspec.json.encode(switched))
            else:
                await pointer.update(POINTER_KEY, msgspec.json.encode(switched), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise RebuildConflictError("the active generation changed while rebuilding") from exc
        log.info(
            "projection rebuilt: generation %d active, %d jobs from %d events in %.2fs",
            target.generation,
            jobs,
            events,
            time.monotonic() - started,
        )
        await _retire(js, current)
    finally:
        with contextlib.suppress(Exception):
            await pointer.delete(_CLAIM_KEY)
    return RebuildReport(
        generation=target.generation,
        bucket=target.bucket,
        previous_generation=current.generation,
        jobs=jobs,
        events=events,
        seconds=round(time.monotonic() - started, 3),
    )


async def _claim(pointer: KeyValue) -> _Claim:
    try:
        revision = await pointer.create(_CLAIM_KEY, now_iso().encode(), msg_ttl=_CLAIM_SECONDS)
    except KeyWrongLastSequenceError as exc:
        raise RebuildConflictError("another rebuild is running") from exc
    return _Claim(revision=revision, renewed=time.monotonic())


@dataclass(slots=True)
class _Claim:
    revision: int
    renewed: float


async def _renew(js: JetStreamContext, claim: _Claim) -> None:
    if time.monotonic() - claim.renewed < _CLAIM_RENEW_SECONDS:
        return
    # KeyValue.update takes no TTL in nats-py 2.16, so renew with the revision-checked publish it wraps.
    try:
        ack = await js.publish(
            f"$KV.{topology.PROJECTION_BUCKET}.{_CLAIM_KEY}",
            now_iso().encode(),
            headers={"Nats-Expected-Last-Subject-Sequence": str(claim.revision)},
            msg_ttl=_CLAIM_SECONDS,
        )
    except APIError as exc:
        if exc.err_code == _WRONG_LAST_SEQUENCE:
            raise RebuildConflictError("the rebuild claim expired and another rebuild took it") from exc
        raise
    claim.revision = ack.seq
    claim.renewed = time.monotonic()


async def _fresh_bucket(js: JetStreamContext, target: Generation, replicas: int) -> KeyValue:
    # Leftovers of a rebuild that crashed before switching would mix old values into the new generation.
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(topology.EVENTS_STREAM, target.consumer)
    with contextlib.suppress(NotFoundError):
        await js.delete_key_value(target.bucket)
    forget_bucket(js, target.bucket)
    await js.create_key_value(KeyValueConfig(bucket=target.bucket, history=1, replicas=replicas))
    await js.add_consumer(topology.EVENTS_STREAM, config=projector_consumer_config(target.consumer))
    return await open_bucket(js, target.bucket, replicas=replicas)


async def _drain(js: JetStreamContext, checkpoints: KeyValue, target: Generation, claim: _Claim) -> int:
    info = await js.consumer_info(topology.EVENTS_STREAM, target.consumer)
    if info.num_pending == 0:
        return 0
    subscription = await js.pull_subscribe_bind(target.consumer, topology.EVENTS_STREAM)
    fold = _BatchFold()
    try:
        while True:
            try:
                wanted = max(1, min(BATCH, int(info.num_pending or 0) + int(info.num_ack_pending or 0)))
                messages = await subscription.fetch(wanted, timeout=0.5)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                info = await js.consumer_info(topology.EVENTS_STREAM, target.consumer)
                if info.num_pending == 0:
                    return fold.processed
                continue
            for message in messages:
                fold.apply(message)
            # Write each checkpoint the batch changed once, then acknowledge the batch. A crashed rebuild
            # never switched the pointer, and the next one starts over in a fresh bucket.
            await fold.flush(checkpoints)
            for message in messages:
                await message.ack()
            await _renew(js, claim)
            info = await js.consumer_info(topology.EVENTS_STREAM, target.consumer)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return fold.processed
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


class _BatchFold:
    """Folds a rebuild's events in memory, in stream order, the way `project_message` folds them live.

    A rebuild owns its fresh bucket (the claim keeps other rebuilds out and no projector reads its
    consumer), so checkpoints can be kept in memory and written once per batch instead of read and
    revision-checked for every event. The property test of live projection against rebuild holds
    the two paths to the same bytes.
    """

    def __init__(self) -> None:
        self.processed = 0
        self._state: dict[str, Checkpoint | None] = {}
        self._deleted: set[str] = set()
        self._dirty: set[str] = set()

    def apply(self, message: Msg) -> None:
        """Fold one stream message into the in-memory checkpoint of its job."""
        sequence = message.metadata.sequence.stream
        job_id = topology.job_id_from_subject(message.subject)
        self.processed += 1
        if job_id in self._deleted:
            return
        current = self._state.get(job_id)
        try:
            event = decode_event(message.data, sequence=sequence)
        except EventDecodeError as exc:
            updated = mark_history_error(current, exc.history_error(), sequence)
        else:
            updated = evolve(current, event, sequence)
            if isinstance(event, CheckpointDeleted):
                self._deleted.add(job_id)
        if updated is not current or job_id in self._deleted:
            self._state[job_id] = updated
            self._dirty.add(job_id)

    async def flush(self, checkpoints: KeyValue) -> None:
        """Write every checkpoint changed since the last flush."""
        writes: list[Awaitable[object]] = []
        for job_id in sorted(self._dirty):
            state = self._state.get(job_id)
            if state is None:
                writes.append(checkpoints.delete(job_id))
            else:
                writes.append(checkpoints.put(job_id, msgspec.json.encode(state)))
        await asyncio.gather(*writes)
        self._dirty.clear()


async def _count_keys(checkpoints: KeyValue) -> int:
    try:
        return len(await checkpoints.keys())
    except NoKeysError:
        return 0


async def _retire(js: JetStreamContext, previous: Generation) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(topology.EVENTS_STREAM, previous.consumer)
    if previous.generation >= 1:
        older = generation(previous.generation - 1)
        with contextlib.suppress(NotFoundError):
            await js.delete_key_value(older.bucket)
        forget_bucket(js, older.bucket)
