"""SIGKILL of the stream leader of a 3-node R3 cluster while 20 jobs run on 3 runners and 2 projectors: nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from contracts import topology
from contracts.checkpoint import Checkpoint
from services.common.store import EventStore
from tests.cluster.conftest import Fleet, NatsCluster, ProbeWriter, audit_job, connect_cluster, describe_state, wait_for

JOBS = 20
RUNNERS = 3
SIMULATED_TURNS = 8
"""The simulator plays 7 tool-use turns over the sample repository and calls `finish` on the 8th."""


async def test_leader_kill_loses_nothing(nats_cluster: NatsCluster, make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet(nats_cluster.url, TURNLOG_REPLICAS="3", TURNLOG_SIM_LATENCY_MS="100", TURNLOG_LEASE_SECONDS="10")
    fleet.serve_api()
    # Two projectors share the durable consumer, so events of one job also reach them out of order.
    fleet.serve("projector", "projector")
    fleet.serve("projector2", "projector")
    for index in range(1, RUNNERS + 1):
        fleet.serve(f"runner{index}", "runner")
    nc = await connect_cluster(nats_cluster.url)
    js = nc.jetstream()
    store = EventStore(nc, js)
    job_ids: list[str] = []
    try:
        await fleet.wait_ready(timeout=60)
        await _assert_replicated(js)

        job_ids += [await fleet.create_job(f"Add error handling, variant {index}") for index in range(JOBS)]
        await wait_for(lambda: _events_stored(js, JOBS * 3), 60, "the jobs to record their first turns")

        leader = (await js.stream_info(topology.EVENTS_STREAM)).cluster.leader
        assert leader in {node.name for node in nats_cluster.nodes}
        probe = ProbeWriter(store, "probe-failover")
        probe_task = asyncio.create_task(probe.run())
        await wait_for(lambda: _true(probe.acked), 10, "the probe writer's first append")

        nats_cluster.node(leader).kill()
        await wait_for(lambda: _new_leader(js, leader), 30, f"a stream leader other than {leader}")
        acked_at_election = len(probe.acked)
        await wait_for(
            lambda: _probe_advanced(probe_task, probe, acked_at_election + 5), 30, "appends after the election"
        )
        nats_cluster.restart(nats_cluster.node(leader))
        probe.stop()
        await probe_task

        await wait_for(lambda: _all_completed(js, job_ids), 120, "every job to complete")
        await wait_for(lambda: _replicas_current(js), 30, "every replica to catch up")
        await wait_for(lambda: _checkpoints_settled(store, js, job_ids), 30, "checkpoints equal to their folds")

        for job_id in job_ids:
            audit = await audit_job(store, js, job_id)
            assert audit.requested == 1, audit
            assert audit.turns == list(range(1, SIMULATED_TURNS + 1)), audit
            assert audit.completed == 1, audit
            assert audit.types[-1] == "JobCompleted", audit
            assert audit.checkpoint_matches, audit

        await probe.assert_complete()
    except BaseException:
        print(fleet.logs())
        print(await describe_state(js, store, job_ids))
        raise
    finally:
        await nc.close()


async def _true(value: Any) -> bool:
    return bool(value)


async def _probe_advanced(task: asyncio.Task[None], probe: ProbeWriter, count: int) -> bool:
    if task.done():
        # Surface the append's own error rather than a timeout.
        task.result()
        raise AssertionError("the probe writer stopped before the test asked it to")
    return len(probe.acked) > count


async def _assert_replicated(js: JetStreamContext) -> None:
    events = await js.stream_info(topology.EVENTS_STREAM)
    assert events.config.num_replicas == 3
    for bucket in (topology.CHECKPOINT_BUCKET, topology.LEASE_BUCKET, topology.ALERT_BUCKET):
        info = await js.stream_info(f"KV_{bucket}")
        assert info.config.num_replicas == 3, bucket


async def _events_stored(js: JetStreamContext, count: int) -> bool:
    info = await js.stream_info(topology.EVENTS_STREAM)
    return bool(info.state.messages >= count)


async def _new_leader(js: JetStreamContext, old: str) -> bool:
    info = await js.stream_info(
        topology.EVENTS_STREAM,
    )
    return info.cluster.leader not in (None, old)


async def _replicas_current(js: JetStreamContext) -> bool:
    info = await js.stream_info(topology.EVENTS_STREAM)
    replicas = info.cluster.replicas or []
    return len(replicas) == 2 and all(replica.current for replica in replicas)


async def _all_completed(js: JetStreamContext, job_ids: list[str]) -> bool:
    checkpoints = await js.key_value(topology.CHECKPOINT_BUCKET)
    for job_id in job_ids:
        try:
            entry = await checkpoints.get(job_id)
        except KeyNotFoundError:
            return False
        status = msgspec.json.decode(entry.value or b"", type=Checkpoint).job_status
        assert status in {"queued", "running", "completed"}, f"job {job_id} ended {status}"
        if status != "completed":
            return False
    return True


async def _checkpoints_settled(store: EventStore, js: JetStreamContext, job_ids: list[str]) -> bool:
    for job_id in job_ids:
        with contextlib.suppress(KeyNotFoundError):
            if (await audit_job(store, js, job_id)).checkpoint_matches:
                continue
        return False
    return True
