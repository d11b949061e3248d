"""Retention, `turnlog cleanup` and `GET /stats` against a real nats-server and an in-process API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

from contracts.events import JobCancelled, JobCompleted, JobResumed
from contracts.lease import Lease
from services.api.app import create_app
from services.cli.ops import render_cleanup
from services.common.clock import now, to_iso
from services.common.embedded import free_port
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.projector.service import apply_event
from services.retention.policy import RetentionWindows
from services.retention.service import apply_retention

TURNLOG = str(Path(sys.executable).parent / "turnlog")
WINDOWS = RetentionWindows(completed=86400, other=7 * 86400)


@pytest.fixture
async def api(runtime: Runtime, nats_server: Any) -> AsyncIterator[str]:
    port = free_port()
    app = create_app(Settings(nats_url=nats_server.url), runtime=runtime, gateway=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def populate(jobs: Any) -> dict[str, str]:
    """Write one job per retention case; return name -> job id."""
    moment = now()
    ids: dict[str, str] = {}

    async def completed(name: str, age: timedelta, **options: Any) -> None:
        ids[name] = await jobs.job(moment - age, **options)
        await jobs.append(JobCompleted(job_id=ids[name], at=to_iso(moment - age), summary="ok", turns=2))

    await completed("old_completed", timedelta(days=2), max_turns=2)
    await completed("new_completed", timedelta(minutes=30))
    ids["recent_failed"] = await jobs.job(moment - timedelta(days=3))
    await jobs.fail(ids["recent_failed"], moment - timedelta(days=3))
    ids["old_failed"] = await jobs.job(moment - timedelta(days=8))
    await jobs.fail(ids["old_failed"], moment - timedelta(days=8))
    ids["old_cancelled"] = await jobs.job(moment - timedelta(days=8))
    await jobs.append(JobCancelled(job_id=ids["old_cancelled"], at=to_iso(moment - timedelta(days=8)), turns=2))

    # An old job whose continuation is running now: neither may go.
    ids["running_tip"] = "runningtip"
    ids["old_parent"] = await jobs.job(moment - timedelta(days=10))
    await jobs.append(
        JobResumed(
            job_id=ids["old_parent"], at=to_iso(moment - timedelta(days=10)), new_job_id="runningtip", from_turn=2
        )
    )
    await jobs.job(moment - timedelta(days=10), job_id="runningtip", resume_of=ids["old_parent"])
    lease = Lease(runner_id="runner-1", expires_at=to_iso(moment + timedelta(days=30)))
    await jobs.runtime.leases.put("runningtip", msgspec.json.encode(lease))

    # An expired chain: the completed continuation and the job it was resumed from go together.
    ids["chain_tip"] = "chaintip"
    ids["chain_parent"] = await jobs.job(moment - timedelta(days=3))
    await jobs.append(
        JobResumed(
            job_id=ids["chain_parent"], at=to_iso(moment - timedelta(days=3)), new_job_id="chaintip", from_turn=2
        )
    )
    await completed("chain_tip", timedelta(days=2), job_id="chaintip", resume_of=ids["chain_parent"])
    return ids


EXPIRED = {"old_completed", "old_failed", "old_cancelled", "chain_tip", "chain_parent"}


async def test_cleanup_dry_run_lists_and_keeps(runtime: Runtime, jobs: Any, api: str) -> None:
    ids = await populate(jobs)
    names = {job_id: name for name, job_id in ids.items()}
    env = {key: value for key, value in os.environ.items() if not key.startswith("TURNLOG_")}
    env["TURNLOG_API_URL"] = api

    process = await asyncio.create_subprocess_exec(
        TURNLOG, "cleanup", "--dry-run", "--json", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    report = json.loads(out)
    assert report["dryRun"] is True
    assert {names[job["jobId"]] for job in report["jobs"]} == EXPIRED
    assert all(job["deleted"] is False for job in report["jobs"])
    assert [names[item["jobId"]] for item in report["skipped"]] == ["old_parent"]

    text = render_cleanup(report)
    assert text.splitlines()[0] == "Would delete 5 job(s) (dry run, nothing deleted):"
    assert f"   {ids['old_failed']}  failed " in text

    keys = set(await runtime.checkpoints.keys())
    assert keys == set(ids.values())


async def test_retention_deletes_expected_jobs(runtime: Runtime, jobs: Any) -> None:
    ids = await populate(jobs)
    report = await apply_retention(runtime, WINDOWS, moment=now(), dry_run=False)

    deleted = [job["jobId"] for job in report["jobs"] if job["deleted"]]
    assert {name for name, job_id in ids.items() if job_id in deleted} == EXPIRED
    assert deleted.index(ids["chain_tip"]) < deleted.index(ids["chain_parent"])
    for name in EXPIRED:
        stored = await runtime.store.read(ids[name])
        assert [type(item.event).__name__ for item in stored] == ["CheckpointDeleted"]
    for name in set(ids) - EXPIRED:
        assert len(await runtime.store.read(ids[name])) > 1

    # What the projector does with each tombstone: the checkpoint goes.
    for job_id in deleted:
        tombstone = (await runtime.store.read(job_id))[-1]
        await apply_event(runtime.checkpoints, tombstone.event, tombstone.sequence)
    assert set(await runtime.checkpoints.keys()) == {ids[name] for name in set(ids) - EXPIRED}

    # Six days later the 3-day-old failure is past its 7 days and the 30-minute-old completion past 24 h.
    later = await apply_retention(runtime, WINDOWS, moment=now() + timedelta(days=6), dry_run=True)
    assert {job["jobId"] for job in later["jobs"]} == {ids["recent_failed"], ids["new_completed"]}


async def test_stats_counts_checkpoints(runtime: Runtime, jobs: Any, api: str) -> None:
    await populate(jobs)
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{api}/stats")).json()
    assert stats["total"] == 9
    assert stats["oldCheckpoints"] == 8
    assert stats["nearMaxTurns"] == 1
    assert stats["failed"] == 2
    assert stats["resumed"] == 2
    assert stats["byStatus"] == {
        "queued": 0, "running": 1, "failed": 2, "completed": 3, "cancelled": 1, "resumed": 2, "unknown": 0,
    }  # fmt: skip
