"""Row 6: kill -9 a runner process; time until another runner appends the next turn of its job."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path

from contracts.events import JobStarted, TurnCompleted
from services.bench.harness import bench_runtime, nats_server, wait_for
from services.bench.processes import ServiceProcess, service_environment
from services.bench.stats import Row, Summary, summarize
from services.bench.workload import prepare_repository, request_event
from services.common.store import EventStore

__all__ = ["measure_takeover"]

LEASE_SECONDS = 2.0
MODEL_LATENCY_MS = 300
_READY_TEXT = " started: "


async def measure_takeover(root: Path, *, quick: bool) -> Row:
    """Keep two runner processes; per trial, kill -9 the one that started the job and time its heir."""
    trials = 1 if quick else 3
    await asyncio.to_thread(prepare_repository, root / "repos")
    runners: list[ServiceProcess] = []
    async with nats_server(root / "nats") as url, bench_runtime(url, "bench-takeover") as runtime:
        env = service_environment(
            TURNLOG_NATS_URL=url,
            TURNLOG_REPOS_DIR=str(root / "repos"),
            TURNLOG_LEASE_SECONDS=str(LEASE_SECONDS),
            TURNLOG_SIM_LATENCY_MS=str(MODEL_LATENCY_MS),
        )

        def start_runner() -> ServiceProcess:
            index = len(runners)
            runner_env = {**env, "TURNLOG_DATA_DIR": str(root / f"runner{index}")}
            runner = ServiceProcess("runner", runner_env, root / f"runner{index}.log")
            runners.append(runner)
            return runner

        samples: list[float] = []
        try:
            pool = [start_runner(), start_runner()]
            for runner in pool:
                await runner.wait_logged(_READY_TEXT)
            for trial in range(trials):
                job_id = f"benchtakeover{trial}"
                await runtime.store.append(request_event(job_id, max_turns=10), expected_last=0)
                await wait_for(partial(_has_turn, runtime.store, job_id), timeout=60, what=f"turn 1 of {job_id}")

                owner = await _owner(runtime.store, job_id)
                victim = next(runner for runner in pool if f"runner {owner} started" in runner.output())
                victim.kill()
                killed_at = time.monotonic()
                await wait_for(
                    partial(_taken_over, runtime.store, job_id),
                    timeout=LEASE_SECONDS + 60,
                    what=f"another runner to append a turn of {job_id}",
                )
                samples.append(time.monotonic() - killed_at)

                # Two runners stand by again before the next trial, so its job still has an heir.
                pool.remove(victim)
                pool.append(start_runner())
                await pool[-1].wait_logged(_READY_TEXT)
        finally:
            for runner in runners:
                await runner.stop()

    turnlog = summarize(samples)
    limit = LEASE_SECONDS + 5
    return Row(
        number=6,
        measure="crash takeover: kill -9 to the next turn by another runner",
        unit="s",
        target=f"≤ lease + 5 s ({limit:.0f} s)",
        turnlog=turnlog,
        baseline=Summary(p50=LEASE_SECONDS, p99=LEASE_SECONDS, count=1),
        met=max(samples) <= limit,
        note=(
            f"{len(samples)} trial(s) with `turnlog serve runner` processes, TURNLOG_LEASE_SECONDS={LEASE_SECONDS:g} "
            f"(baseline column), simulator latency {MODEL_LATENCY_MS} ms per call; met when the slowest trial is "
            "within the limit."
        ),
    )


async def _has_turn(store: EventStore, job_id: str) -> bool:
    return any(isinstance(stored.event, TurnCompleted) for stored in await store.read(job_id))


async def _owner(store: EventStore, job_id: str) -> str:
    starts = [stored.event for stored in await store.read(job_id) if isinstance(stored.event, JobStarted)]
    if not starts:
        raise RuntimeError(f"job {job_id} has a turn but no JobStarted event")
    return starts[-1].runner_id


async def _taken_over(store: EventStore, job_id: str) -> bool:
    """Return whether a turn follows a second JobStarted, which only the heir runner appends."""
    restarted = False
    for stored in await store.read(job_id):
        if isinstance(stored.event, JobStarted) and stored.event.attempt >= 2:
            restarted = True
        elif restarted and isinstance(stored.event, TurnCompleted):
            return True
    return False
