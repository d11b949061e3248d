"""Projection generations: which checkpoint bucket and projector consumer are active, and how to find them.

Generation 0 is the bucket `turnlog-checkpoints` fed by the durable consumer `projector`. A rebuild
writes generation N to `turnlog-checkpoints-N` through the consumer `projector-gN`, then points the
`checkpoints` key of the `turnlog-projection` bucket at it with one revision-checked write. Readers
resolve that pointer on every request, and projectors check it after every fetch, so the switch is a
single atomic KV update for everyone.
"""

from __future__ import annotations

import weakref

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from contracts import topology

__all__ = [
    "POINTER_KEY",
    "Generation",
    "active_generation",
    "checkpoint_bucket",
    "forget_bucket",
    "generation",
    "open_bucket",
    "pointer_bucket",
]

POINTER_KEY = "checkpoints"

_buckets: weakref.WeakKeyDictionary[JetStreamContext, dict[str, KeyValue]] = weakref.WeakKeyDictionary()


class Generation(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One generation of the checkpoint projection: its number, bucket and durable consumer."""

    generation: int
    bucket: str
    consumer: str
    switched_at: str | None = None
    """When a rebuild made this generation active, as an RFC 3339 UTC timestamp; None for generation 0."""


def generation(number: int, *, switched_at: str | None = None) -> Generation:
    """Return the names generation `number` uses."""
    if number == 0:
        return Generation(generation=0, bucket=topology.CHECKPOINT_BUCKET, consumer=topology.PROJECTOR_CONSUMER)
    return Generation(
        generation=number,
        bucket=f"{topology.CHECKPOINT_BUCKET}-{number}",
        consumer=f"{topology.PROJECTOR_CONSUMER}-g{number}",
        switched_at=switched_at,
    )


async def pointer_bucket(js: JetStreamContext, *, replicas: int = 1) -> KeyValue:
    """Open the bucket that contains the active-generation pointer, creating it when missing."""
    return await open_bucket(js, topology.PROJECTION_BUCKET, replicas=replicas)


async def active_generation(js: JetStreamContext) -> tuple[Generation, int | None]:
    """Return the active generation and the pointer's revision (None: no rebuild yet, generation 0)."""
    pointer = await pointer_bucket(js)
    try:
        entry = await pointer.get(POINTER_KEY)
    except KeyNotFoundError:
        return generation(0), None
    return msgspec.json.decode(entry.value or b"", type=Generation), entry.revision


async def checkpoint_bucket(js: JetStreamContext) -> KeyValue:
    """Open the checkpoint bucket of the active generation."""
    active, _ = await active_generation(js)
    return await open_bucket(js, active.bucket)


async def open_bucket(js: JetStreamContext, bucket: str, *, replicas: int = 1) -> KeyValue:
    """Open a KV bucket with history 1, creating it when missing; handles are cached per connection."""
    cached = _buckets.setdefault(js, {})
    handle = cached.get(bucket)
    if handle is not None:
        return handle
    try:
        handle = await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        handle = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, replicas=replicas))
    cached[bucket] = handle
    return handle


def forget_bucket(js: JetStreamContext, bucket: str) -> None:
    """Drop a cached handle, after the bucket was deleted."""
    _buckets.get(js, {}).pop(bucket, None)
