"""Row 9: many concurrent jobs in one `turnlog serve runner` process, each model call taking 500 ms."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from nats.aio.msg import Msg

from services.bench.harness import bench_runtime, nats_server, wait_for
from services.bench.processes import ServiceProcess, service_environment
from services.bench.stats import Row, Summary
from services.bench.workload import prepare_repository, request_event
from services.common.embedded import free_port
from services.common.store import EventStore

__all__ = ["measure_runner"]

MODEL_LATENCY_S = 0.5
RSS_LIMIT_MB = 300.0
_TERMINAL_KINDS = frozenset({"completed", "failed", "cancelled"})
_CLOCK_TICKS = 100
"""Clock ticks per second of /proc/<pid>/stat CPU times (USER_HZ), 100 on Linux x86-64 and arm64."""


class _Tally:
    """Arrival times of the runner's events, by kind, as the benchmark's subscription receives them."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.turn_times: list[float] = []
        self.ended: set[str] = set()

    async def on_event(self, message: Msg) -> None:
        _, _, job_id, kind = message.subject.split(".", 3)
        self.kinds[kind] += 1
        if kind == "turn":
            self.turn_times.append(time.perf_counter())
        elif kind in _TERMINAL_KINDS:
            self.ended.add(job_id)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field} line")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


async def measure_runner(root: Path, *, quick: bool) -> Row:
    """Queue every job at once and time the turns from the first request to the last job's end."""
    jobs = 200 if quick else 1000
    cap = 25.0 if quick else 120.0
    await asyncio.to_thread(prepare_repository, root / "repos")
    simulator_port = free_port()
    async with nats_server(root / "nats") as url, bench_runtime(url, "bench-runner") as runtime:
        env = service_environment(
            TURNLOG_NATS_URL=url,
            TURNLOG_REPOS_DIR=str(root / "repos"),
            TURNLOG_DATA_DIR=str(root / "runner"),
            TURNLOG_RUNNER_CONCURRENCY=str(jobs),
            TURNLOG_SIM_LATENCY_MS=str(int(MODEL_LATENCY_S * 1000)),
            TURNLOG_MODEL_TIMEOUT="120",
            ANTHROPIC_API_KEY="bench-simulator",
            ANTHROPIC_BASE_URL=f"http://127.0.0.1:{simulator_port}",
        )
        simulator = ServiceProcess(
            "simulator",
            env,
            root / "simulator.log",
            command=[sys.executable, "-m", "services.bench.simulator_process", "--port", str(simulator_port)],
        )
        runner = ServiceProcess("runner", env, root / "runner.log")
        tally = _Tally()
        subscription = await runtime.nc.subscribe("turnlog.events.*.*", cb=tally.on_event)
        try:
            await wait_for(lambda: _listening(simulator_port), timeout=60, what="the simulator process")
            await runner.wait_logged(" started: ", timeout=60)
            idle_rss = _status_kib(runner.pid, "VmRSS") / 1024

            runner_cpu, simulator_cpu = _cpu_seconds(runner.pid), _cpu_seconds(simulator.process.pid)
            started = time.perf_counter()
            await _queue_jobs(runtime.store, jobs)
            peak_rss = idle_rss
            while len(tally.ended) < jobs and time.perf_counter() - started < cap:
                peak_rss = max(peak_rss, _status_kib(runner.pid, "VmRSS") / 1024)
                await asyncio.sleep(0.25)
            elapsed = (tally.turn_times[-1] if tally.turn_times else time.perf_counter()) - started
            runner_cpu = _cpu_seconds(runner.pid) - runner_cpu
            simulator_cpu = _cpu_seconds(simulator.process.pid) - simulator_cpu
            high_water = _status_kib(runner.pid, "VmHWM") / 1024
        finally:
            await subscription.unsubscribe()
            await runner.stop()
            await simulator.stop()

    turns = len(tally.turn_times)
    achieved = turns / elapsed if elapsed > 0 else 0.0
    ideal = jobs / MODEL_LATENCY_S
    ratio = achieved / ideal
    rss = max(peak_rss, high_water)
    finished = len(tally.ended) >= jobs
    extent = "every job ended"
    if not finished:
        extent = f"stopped after {cap:.0f} s with {len(tally.ended)} of {jobs} jobs ended"
    return Row(
        number=9,
        measure=f"{jobs:,} concurrent jobs in one runner, 500 ms per model call (turns/s)",
        unit="turns/s",
        target=f"≥ 90%, RSS ≤ {RSS_LIMIT_MB:.0f} MB",
        turnlog=Summary(p50=achieved, p99=achieved, count=1),
        baseline=Summary(p50=ideal, p99=ideal, count=1),
        ratio=ratio,
        met=ratio >= 0.9 and rss <= RSS_LIMIT_MB,
        note=(
            f"{turns:,} turns in {elapsed:.1f} s from queueing to the last turn "
            f"({extent}; events {dict(tally.kinds)}); "
            f"runner peak RSS {rss:.0f} MB (idle {idle_rss:.0f} MB); CPU used meanwhile: runner {runner_cpu:.1f} s, "
            f"simulator {simulator_cpu:.1f} s, on {_cores()} cores."
        ),
        details={"rss_mb": round(rss), "turns": turns, "jobs_ended": len(tally.ended)},
    )


def _cores() -> int:
    return os.cpu_count() or 0


async def _listening(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(f"http://127.0.0.1:{port}/_sim/requests")
    except httpx.HTTPError:
        return False
    return True


async def _queue_jobs(store: EventStore, jobs: int) -> None:
    limit = asyncio.Semaphore(64)

    async def queue(index: int) -> None:
        async with limit:
            await store.append(request_event(f"benchrunner{index:05d}", max_turns=10), expected_last=0)

    await asyncio.gather(*(queue(index) for index in range(jobs)))
