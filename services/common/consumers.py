"""Durable pull consumers over the events stream, declared on every start so their settings stay current."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import topology

__all__ = ["bind_durable", "cancel_until_done", "durable_config"]


def durable_config(name: str, filters: list[str], *, ack_wait: float, max_ack_pending: int = 10_000) -> ConsumerConfig:
    """Describe a durable that delivers every matching event from the start, acked one by one, never given up."""
    return ConsumerConfig(
        durable_name=name,
        filter_subjects=filters,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
    )


async def bind_durable(js: JetStreamContext, config: ConsumerConfig) -> JetStreamContext.PullSubscription:
    """Create or update the durable, then bind a pull subscription to it.

    An existing durable keeps its old settings when it is only bound, so it is declared every time.
    """
    await js.add_consumer(topology.EVENTS_STREAM, config=config)
    return await js.pull_subscribe_bind(config.durable_name, topology.EVENTS_STREAM)


async def cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancel `task`, again and again, until it has stopped; its result or error is dropped.

    One cancel is not always enough: on Python 3.11, `asyncio.wait_for`, which nats-py's requests
    use, returns the reply instead of raising when the cancel arrives after the reply is set (its
    `except CancelledError` branch returns `fut.result()` when the future is done). A
    runner's heartbeat then went on forever and held its work item with in-progress acks (seen in
    the runner tests). Stop a heartbeat this way before acking or naking its message, because an
    in-progress ack sent after a delayed nak also cancels the delay.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
