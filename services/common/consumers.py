"""Durable pull consumers over the events stream, declared on every start so their settings stay current."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import topology

__all__ = ["bind_durable", "durable_config"]


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
