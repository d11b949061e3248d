"""Single-node restarts, runner hand-over on SIGTERM and two projectors, with real `turnlog serve` processes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from contracts import topology
from contracts.events import JobRequested, JobStarted
from services.common.clock import now_iso
from services.common.store import EventStore
from tests.cluster.conftest import (
    Fleet,
    ProbeWriter,
    audit_job,
    connect_cluster,
    describe_state,
    turn_event,
    wait_for,
)

SIMULATED_TURNS = 8


async def test_nats_restart_mid_job(nats_server: Any, make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet(nats_server.url, TURNLOG_SIM_LATENCY_MS="200", TURNLOG_LEASE_SECONDS="10")
    fleet.serve_api()
    fleet.serve("projector", "projector")
    fleet.serve("runner", "runner")
    nc = await connect_cluster(nats_server.url)
    js = nc.jetstream()
    store = EventStore(nc, js)
    job_ids: list[str] = []
    try:
        await fleet.wait_ready(timeout=60)
        job_ids += [await fleet.create_job(f"Add error handling, variant {index}") for index in range(3)]
        await wait_for(lambda: _all_have_turns(store, job_ids, 2), 60, "two turns of every job")
        probe = ProbeWriter(store, "probe-restart")
        probe_task = asyncio.create_task(probe.run())
        await wait_for(lambda: _true(probe.acked), 10, "the probe writer's first append")

        nats_server.kill()
        acked_before = len(probe.acked)
        nats_server.start()
        await wait_for(lambda: _true(len(probe.acked) > acked_before + 5), 30, "appends after the restart")
        probe.stop()
        await probe_task

        await wait_for(lambda: _all_settled(store, js, job_ids), 90, "every job to complete and be projected")
        for job_id in job_ids:
            audit = await audit_job(store, js, job_id)
            assert audit.turns == list(range(1, SIMULATED_TURNS + 1)), audit
            assert audit.completed == 1, audit
            assert audit.checkpoint_matches, audit
        await probe.assert_complete()
        for name in ("api", "runner", "projector"):
            assert "reconnected to NATS" in fleet.log(name), name
    except BaseException:
        print(fleet.logs())
        print(await describe_state(js, store, job_ids))
        raise
    finally:
        await nc.close()


async def test_runner_sigterm_hands_jobs_over(nats_server: Any, make_fleet: Callable[..., Fleet]) -> None:
    # The lease is far longer than the test may wait, so only an explicit hand-back lets the jobs finish.
    fleet = make_fleet(nats_server.url, TURNLOG_SIM_LATENCY_MS="1000", TURNLOG_LEASE_SECONDS="120")
    fleet.serve_api()
    fleet.serve("projector", "projector")
    first = fleet.serve("runner1", "runner")
    nc = await connect_cluster(nats_server.url)
    js = nc.jetstream()
    store = EventStore(nc, js)
    job_ids: list[str] = []
    try:
        await fleet.wait_ready(timeout=60)
        job_ids += [await fleet.create_job(f"Add error handling, variant {index}") for index in range(3)]
        await wait_for(lambda: _all_have_turns(store, job_ids, 1), 60, "a turn of every job on runner1")
        fleet.serve("runner2", "runner")
        await wait_for(lambda: _true("started" in fleet.log("runner2")), 30, "runner2 to start")

        unfinished = [job_id for job_id in job_ids if (await audit_job(store, js, job_id)).completed == 0]
        assert unfinished, "every job ended before runner2 started; raise TURNLOG_SIM_LATENCY_MS"
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 30) == 0
        await wait_for(lambda: _all_settled(store, js, job_ids), 30, "every job to complete on runner2")

        for job_id in job_ids:
            audit = await audit_job(store, js, job_id)
            assert audit.turns == list(range(1, SIMULATED_TURNS + 1)), audit
            assert audit.completed == 1, audit
            assert audit.checkpoint_matches, audit
        for job_id in unfinished:
            starts = [stored.event for stored in await store.read(job_id) if isinstance(stored.event, JobStarted)]
            assert [start.attempt for start in starts] == [1, 2], job_id
            assert starts[0].runner_id != starts[1].runner_id
        assert "handing back" in fleet.log("runner1")
    except BaseException:
        print(fleet.logs())
        print(await describe_state(js, store, job_ids))
        raise
    finally:
        await nc.close()


async def test_two_projectors_match_fold(nats_cluster: Any, make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet(nats_cluster.url, TURNLOG_REPLICAS="3")
    fleet.serve("projector1", "projector")
    fleet.serve("projector2", "projector")
    nc = await connect_cluster(nats_cluster.url)
    js = nc.jetstream()
    store = EventStore(nc, js)
    job_ids = [f"twoproj{index}" for index in range(8)]
    last = dict.fromkeys(job_ids, 0)

    async def write_history(job_id: str) -> None:
        request = JobRequested(job_id=job_id, at=now_iso(), repository="my-org/my-repo", task="t", max_turns=100)
        last[job_id] = await store.append(request, expected_last=0)
        for turn in range(1, 61):
            last[job_id] = await store.append(turn_event(job_id, turn), expected_last=last[job_id])

    try:
        await wait_for(lambda: _consumer_bound(js, 2), 30, "both projectors to pull")
        # Concurrent writers put events of the same job close together in the stream.
        await asyncio.gather(*(write_history(job_id) for job_id in job_ids))

        await wait_for(lambda: _projected_to(store, js, last), 30, "both projectors to reach the last events")
        for job_id in job_ids:
            audit = await audit_job(store, js, job_id)
            assert audit.checkpoint_matches, audit
    finally:
        await nc.close()


async def _true(value: Any) -> bool:
    return bool(value)


async def _all_have_turns(store: EventStore, job_ids: list[str], turns: int) -> bool:
    for job_id in job_ids:
        history = await store.read(job_id)
        if sum(type(stored.event).__name__ == "TurnCompleted" for stored in history) < turns:
            return False
    return True


async def _all_settled(store: EventStore, js: Any, job_ids: list[str]) -> bool:
    for job_id in job_ids:
        audit = await audit_job(store, js, job_id)
        if audit.completed != 1 or not audit.checkpoint_matches:
            return False
    return True


async def _projected_to(store: EventStore, js: Any, last: dict[str, int]) -> bool:
    checkpoints = await js.key_value(topology.CHECKPOINT_BUCKET)
    for job_id, sequence in last.items():
        entry = await checkpoints.get(job_id)
        if f'"lastSequence":{sequence}' not in (entry.value or b"").decode():
            return False
    return True


async def _consumer_bound(js: Any, waiting: int) -> bool:
    info = await js.consumer_info(topology.EVENTS_STREAM, topology.PROJECTOR_CONSUMER)
    return bool(info.num_waiting >= waiting)
