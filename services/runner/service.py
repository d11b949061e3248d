"""The runner service: pulls job requests from JetStream, keeps each alive with heartbeats, runs its loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from datetime import timedelta

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError

from contracts import topology
from contracts.events import JobCancelled, JobFailed, JobStarted
from contracts.lease import Lease
from services.common.checkout import CheckoutError, prepare_checkout, repository_path
from services.common.clock import now, now_iso, to_iso
from services.common.fold import TERMINAL
from services.common.history import HistoryError, load_job, load_lineage
from services.common.settings import Settings
from services.common.store import AppendConflictError, EventStore
from services.runner.loop import JobLoop, LoopContext
from services.runner.model import ModelClient

__all__ = ["RunnerService"]

log = logging.getLogger(__name__)


class RunnerService:
    """Consumes `turnlog.events.*.requested` with a durable pull consumer shared by every runner process."""

    def __init__(self, *, store: EventStore, model: ModelClient, settings: Settings) -> None:
        self._store = store
        self._model = model
        self._settings = settings
        self.runner_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._slots = asyncio.Semaphore(settings.runner_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Pull and run jobs until `stop` is called."""
        js = self._store.js
        await self._ensure_consumer()
        subscription = await js.pull_subscribe_bind(topology.RUNNER_CONSUMER, topology.EVENTS_STREAM)
        max_payload = int(self._store.nc.max_payload)
        job_loop = JobLoop(store=self._store, model=self._model, settings=self._settings, max_payload=max_payload)
        log.info("runner %s started: %d concurrent jobs", self.runner_id, self._settings.runner_concurrency)

        while not self._stopping.is_set():
            await self._slots.acquire()
            try:
                messages = await subscription.fetch(1, timeout=1.0)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                self._slots.release()
                continue
            except Exception:
                self._slots.release()
                log.exception("fetching work failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                task = asyncio.create_task(self._handle(message, job_loop))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop fetching and wait for running jobs to reach their next commit point."""
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _ensure_consumer(self) -> None:
        # An existing durable keeps its old settings when bound, so declare it explicitly every start.
        config = ConsumerConfig(
            durable_name=topology.RUNNER_CONSUMER,
            filter_subject=topology.WORK_FILTER,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._settings.lease_seconds,
            max_deliver=-1,
            max_ack_pending=10_000,
        )
        await self._store.js.add_consumer(topology.EVENTS_STREAM, config=config)

    async def _handle(self, message: Msg, job_loop: JobLoop) -> None:
        job_id = topology.job_id_from_subject(message.subject)
        heartbeat = asyncio.create_task(self._heartbeat(message, job_id))
        try:
            outcome = await self._run_job(job_id, job_loop)
            if outcome == "lost":
                # Another runner owns the job and its work item now; neither ack nor nak it.
                return
            if outcome == "retry":
                await message.nak(delay=self._settings.lease_seconds)
                return
            await message.ack()
        except asyncio.CancelledError:
            # Shutting down: hand the job back right away instead of waiting for the lease to expire.
            with contextlib.suppress(Exception):
                await message.nak()
            raise
        except Exception:
            log.exception("job %s: runner error; the job will be retried", job_id)
            with contextlib.suppress(Exception):
                await message.nak(delay=self._settings.lease_seconds)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._slots.release()

    async def _run_job(self, job_id: str, job_loop: JobLoop) -> str:
        try:
            history = await load_job(self._store, job_id)
        except HistoryError as exc:
            log.error("job %s: unreadable history, not running it: %s", job_id, exc)
            return "done"
        if history is None or history.checkpoint is None or history.checkpoint.job_status in TERMINAL:
            return "done"
        if history.checkpoint.cancel_requested:
            await self._store.append(
                JobCancelled(job_id=job_id, at=now_iso(), turns=history.checkpoint.turns),
                expected_last=history.last_sequence,
            )
            return "done"

        lineage = await load_lineage(self._store, job_id)
        attempt = len(history.starts()) + 1
        try:
            source = repository_path(self._settings.resolved_repos_dir(), lineage.repository)
            workspace, base_commit = await prepare_checkout(
                source,
                self._settings.resolved_workspaces_dir() / job_id,
                lineage.base_commit,
                lineage.changes(),
            )
        except CheckoutError as exc:
            return await self._fail_setup(job_id, history.last_sequence, lineage.last_turn, str(exc))

        started = JobStarted(
            job_id=job_id, at=now_iso(), runner_id=self.runner_id, base_commit=base_commit, attempt=attempt
        )
        try:
            expected = await self._store.append(started, expected_last=history.last_sequence)
        except AppendConflictError:
            log.info("job %s: another runner started it first", job_id)
            return "lost"
        log.info("job %s: started (attempt %d) at turn %d", job_id, attempt, lineage.last_turn)
        context = LoopContext(job_id=job_id, lineage=lineage, workspace=workspace, expected_last=expected)
        return await job_loop.run(context)

    async def _fail_setup(self, job_id: str, expected: int, turns: int, detail: str) -> str:
        log.error("job %s: cannot prepare its workspace: %s", job_id, detail)
        failed = JobFailed(
            job_id=job_id, at=now_iso(), kind="workspace_error", message=detail, retryable=False, turns=turns
        )
        try:
            await self._store.append(failed, expected_last=expected)
        except AppendConflictError:
            return "lost"
        return "done"

    async def _heartbeat(self, message: Msg, job_id: str) -> None:
        """Keep the work item and the lease alive while the job runs."""
        interval = max(self._settings.lease_seconds / 3, 0.2)
        leases = await self._store.js.key_value(topology.LEASE_BUCKET)
        while True:
            expires = to_iso(now() + _seconds(self._settings.lease_seconds))
            try:
                await message.in_progress()
                await leases.put(job_id, msgspec.json.encode(Lease(runner_id=self.runner_id, expires_at=expires)))
            except Exception as exc:
                log.warning("job %s: heartbeat failed (%s); retrying in %.1fs", job_id, exc, interval)
            await asyncio.sleep(interval)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
