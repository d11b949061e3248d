"""Connecting to NATS and declaring turnlog's streams and KV buckets idempotently."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError, ServiceUnavailableError

from contracts import topology

log = logging.getLogger(__name__)

_STREAM_IN_USE = 10058
_ERROR_LOG_EVERY = 60
"""While NATS stays unreachable, log one connection error in this many (about one per 30 s)."""


async def connect(servers: list[str], *, name: str) -> Client:
    """Connect with unlimited reconnects, so a restarted or re-elected server never ends a service."""

    client = Client()
    errors_since_connect = 0

    async def on_error(exc: Exception) -> None:
        # A reconnect loop fails every 0.5 s while the servers are down, so log the first failure
        # and then one line per _ERROR_LOG_EVERY failures, with the count.
        nonlocal errors_since_connect
        errors_since_connect += 1
        count = errors_since_connect
        if count == 1 or count % _ERROR_LOG_EVERY == 0:
            suffix = f" ({count} times since the last connection)" if count > 1 else ""
            log.warning("NATS connection error: %s%s", exc, suffix)

    async def on_disconnect() -> None:
        # Closing the connection on purpose also disconnects it; only an unexpected loss is news.
        if not client.is_closed:
            log.warning("disconnected from NATS; reconnecting")

    async def on_reconnect() -> None:
        nonlocal errors_since_connect
        errors_since_connect = 0
        log.info("reconnected to NATS")

    await client.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; nats-py annotates int but sleeps a float
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    return client


def events_stream_config(replicas: int) -> StreamConfig:
    """Describe the history stream: file storage, kept forever, direct gets and atomic batches allowed."""
    return StreamConfig(
        name=topology.EVENTS_STREAM,
        subjects=[topology.EVENTS_SUBJECTS],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=120.0,
        allow_direct=True,
        allow_atomic=True,
        description="turnlog job histories: one subject per job and event kind",
    )


async def ensure_topology(js: JetStreamContext, *, replicas: int = 1, timeout: float = 60.0) -> None:
    """Create or update the events stream and the KV buckets; safe to call from every service at start.

    Retries for up to `timeout` seconds while JetStream is unavailable, as it is while a freshly
    started cluster elects its meta leader (the first API requests time out) or a node restarts.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.25
    while True:
        try:
            await _declare_topology(js, replicas)
            return
        except (NatsTimeoutError, NoRespondersError, ServiceUnavailableError) as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("JetStream is not available yet (%r); declaring the topology again in %.2fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _declare_topology(js: JetStreamContext, replicas: int) -> None:
    config = events_stream_config(replicas)
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise
        await js.update_stream(config)

    await _ensure_bucket(js, KeyValueConfig(bucket=topology.CHECKPOINT_BUCKET, history=1, replicas=replicas))
    await _ensure_bucket(js, KeyValueConfig(bucket=topology.LEASE_BUCKET, history=1, replicas=replicas))
    await _ensure_bucket(js, KeyValueConfig(bucket=topology.FLOOD_BUCKET, history=1, replicas=replicas, ttl=86400))
    await _ensure_bucket(
        js,
        KeyValueConfig(
            bucket=topology.ALERT_BUCKET, history=1, replicas=replicas, ttl=topology.ALERT_BUCKET_TTL_SECONDS
        ),
    )


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    try:
        await js.key_value(config.bucket)
    except (BucketNotFoundError, NotFoundError):
        await js.create_key_value(config)
