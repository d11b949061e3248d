"""A connected runtime: the NATS connection, the event store and the KV buckets one process shares."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts import topology
from services.common.natsconn import connect, ensure_topology
from services.common.settings import Settings
from services.common.store import EventStore

__all__ = ["Runtime", "open_runtime"]


@dataclass(slots=True)
class Runtime:
    """Handles every service of one process uses; close it once at shutdown."""

    nc: Client
    js: JetStreamContext
    store: EventStore
    checkpoints: KeyValue
    leases: KeyValue
    flood: KeyValue

    async def close(self) -> None:
        """Flush pending publishes and close the connection."""
        if self.nc.is_closed:
            return
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=2)
        await self.nc.close()


async def open_runtime(settings: Settings, *, name: str) -> Runtime:
    """Connect to NATS, declare the topology idempotently and open the buckets."""
    nc = await connect(settings.nats_servers(), name=name)
    js = nc.jetstream()
    await ensure_topology(js, replicas=settings.replicas)
    return Runtime(
        nc=nc,
        js=js,
        store=EventStore(nc, js, retry_window=settings.store_retry_window),
        checkpoints=await js.key_value(topology.CHECKPOINT_BUCKET),
        leases=await js.key_value(topology.LEASE_BUCKET),
        flood=await js.key_value(topology.FLOOD_BUCKET),
    )
