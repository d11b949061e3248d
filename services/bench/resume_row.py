"""Row 5: from `POST /checkpoints/{id}/resume` to the model simulator receiving the resumed conversation."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx

from services.api.app import create_app
from services.bench.harness import bench_runtime, nats_server, wait_for
from services.bench.services import Arrival, serve_asgi, serve_timed_simulator
from services.bench.stats import Row, summarize
from services.bench.workload import prepare_repository, write_job
from services.common.fold import TERMINAL
from services.common.history import load_job
from services.common.settings import Settings
from services.common.store import EventStore
from services.runner.model import ModelClient
from services.runner.service import RunnerService
from services.simulator.settings import SimulatorSettings

__all__ = ["measure_resume"]

BIG_TURNS = 50
"""50 turns of 20 KiB: a history of about 1 MB."""
SMALL_TURNS = 1


async def measure_resume(root: Path, *, quick: bool) -> Row:
    """Resume 1 MB histories (and 1-turn ones as the baseline) one at a time on an in-process stack."""
    samples = 4 if quick else 15
    base_commit = await asyncio.to_thread(prepare_repository, root / "repos")
    async with nats_server(root / "nats") as url, bench_runtime(url, "bench-resume") as runtime:
        settings = Settings(nats_url=url, data_dir=root / "data", repos_dir=root / "repos")
        async with (
            serve_timed_simulator(SimulatorSettings()) as (simulator_url, clock),
            serve_asgi(create_app(settings, runtime=runtime, api=True, gateway=False)) as api_url,
            httpx.AsyncClient(base_url=api_url, timeout=30) as http,
        ):
            model = ModelClient(api_key="simulator", base_url=simulator_url, timeout=60)
            runner = RunnerService(store=runtime.store, model=model, settings=settings)
            runner_task = asyncio.create_task(runner.run())
            try:
                big: list[float] = []
                small: list[float] = []
                for index in range(samples + 1):
                    for turns, into in ((BIG_TURNS, big), (SMALL_TURNS, small)):
                        job_id = f"benchresume{turns}x{index}"
                        await write_job(runtime.store, job_id, turns=turns, base_commit=base_commit)
                        elapsed = await _resume_once(http, runtime.store, clock.arrivals, job_id, turns)
                        if index > 0:
                            into.append(elapsed)
            finally:
                await runner.stop()
                runner_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner_task
                await model.close()

    turnlog, baseline = summarize(big), summarize(small)
    return Row(
        number=5,
        measure="end-to-end resume of a 1 MB history until the model request",
        unit="ms",
        target="p50 ≤ 50 ms",
        turnlog=turnlog,
        baseline=baseline,
        met=turnlog.p50 <= 50,
        note=(
            "in-process API, runner and simulator on one event loop; timed from the POST to the simulator "
            "holding the whole request body. Baseline: the same resume of a 1-turn history (no ratio target)."
        ),
    )


async def _resume_once(
    http: httpx.AsyncClient, store: EventStore, arrivals: asyncio.Queue[Arrival], job_id: str, turns: int
) -> float:
    while not arrivals.empty():
        arrivals.get_nowait()
    started = time.perf_counter()
    response = await http.post(f"/checkpoints/{job_id}/resume")
    if response.status_code != 202:
        raise RuntimeError(f"resume of {job_id} failed with HTTP {response.status_code}: {response.text}")
    arrival = await asyncio.wait_for(arrivals.get(), timeout=30)
    elapsed = (arrival.at - started) * 1000
    minimum = turns * 20_000
    if arrival.size < minimum:
        raise RuntimeError(f"the model request of {job_id} has {arrival.size} bytes, expected ≥ {minimum}")

    new_job_id = str(response.json()["newJobId"])

    async def finished() -> bool:
        history = await load_job(store, new_job_id)
        return history is not None and history.checkpoint is not None and history.checkpoint.job_status in TERMINAL

    await wait_for(finished, timeout=30, what=f"resumed job {new_job_id} to end")
    return elapsed
