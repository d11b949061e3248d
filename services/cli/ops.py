"""Operations: `turnlog cleanup`, and starting the notifier, alerts, auto-resume and retention services."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import click

from services.cli.client import ApiClient
from services.common.runtime import Runtime
from services.common.settings import Settings

__all__ = ["cleanup", "render_cleanup", "start_operations"]


@click.command()
@click.option("--dry-run", is_flag=True, help="List the jobs the policy would delete, and delete none.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with the API's fields.")
def cleanup(dry_run: bool, as_json: bool) -> None:
    """Apply the retention policy now: delete old completed, failed, cancelled and unknown jobs."""
    client = ApiClient()
    try:
        report = client.json("POST", "/cleanup", params={"dryRun": "true" if dry_run else "false"})
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    click.echo(render_cleanup(report))


def render_cleanup(report: dict[str, Any]) -> str:
    """Render a `POST /cleanup` report: one line per job deleted (or that would be), then the jobs kept."""
    jobs: list[dict[str, Any]] = report.get("jobs", [])
    skipped: list[dict[str, Any]] = report.get("skipped", [])
    end = ":" if jobs else "."
    if report.get("dryRun"):
        lines = [f"Would delete {len(jobs)} job(s) (dry run, nothing deleted){end}"]
    else:
        lines = [f"Deleted {sum(1 for job in jobs if job.get('deleted'))} job(s){end}"]
    for job in jobs:
        lines.append(f"   {job['jobId']}  {job['jobStatus']:<10} last updated {job['lastUpdated']}  ({job['reason']})")
    if skipped:
        lines.append(f"Kept {len(skipped)} job(s):")
        lines.extend(f"   {item['jobId']}  {item['reason']}" for item in skipped)
    return "\n".join(lines)


async def start_operations(
    wanted: set[str],
    runtime: Runtime,
    settings: Settings,
    announce: Callable[[str], None],
    tasks: list[asyncio.Task[Any]],
    cleanups: list[Callable[[], Awaitable[None]]],
) -> None:
    """Start the notifier, alerts, auto-resume and retention services that are in `wanted`.

    Each gets a task in `tasks` and a stop action in `cleanups`, which the stack runs in reverse order.
    """
    from services.alerts.service import AlertService
    from services.alerts.settings import AlertSettings
    from services.autoresume.service import AutoResumeService
    from services.notifier.service import NotifierService
    from services.retention.service import RetentionService

    if "notifier" in wanted:
        notifier = NotifierService(store=runtime.store, settings=settings)
        _track(tasks, cleanups, "notifier", notifier.run(), notifier.stop)
    if "alerts" in wanted:
        alerts = AlertService(runtime=runtime, settings=AlertSettings())

        async def stop_alerts() -> None:
            alerts.stop()
            await alerts.close()

        _track(tasks, cleanups, "alerts", alerts.run(), stop_alerts)
    if "autoresume" in wanted:
        if settings.auto_resume:
            autoresume = AutoResumeService(store=runtime.store, settings=settings)
            _track(tasks, cleanups, "autoresume", autoresume.run(), _async(autoresume.stop))
            announce(f"Auto-resume is on: at most {settings.auto_resume_max_chain} resumes per chain")
        else:
            announce("Auto-resume is off; set TURNLOG_AUTO_RESUME=1 to resume retryable failures automatically")
    if "retention" in wanted:
        retention = RetentionService(runtime=runtime, settings=settings)
        _track(tasks, cleanups, "retention", retention.run(), _async(retention.stop))


def _track(
    tasks: list[asyncio.Task[Any]],
    cleanups: list[Callable[[], Awaitable[None]]],
    name: str,
    work: Coroutine[Any, Any, None],
    stop: Callable[[], Awaitable[None]],
) -> None:
    task = asyncio.create_task(work, name=name)
    tasks.append(task)

    async def stop_then_cancel() -> None:
        await stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    cleanups.append(stop_then_cancel)


def _async(action: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        action()

    return run
