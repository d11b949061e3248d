"""The runner service: pulls job requests from JetStream, keeps each alive with heartbeats, runs its loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import FetchTimeoutError

from contracts import topology
from contracts.events import CheckpointDeleted, JobCancelled, JobFailed, JobStarted
from contracts.lease import Lease
from services.common.checkout import CheckoutError, prepare_checkout, repository_path
from services.common.clock import now, now_iso, to_iso
from services.common.consumers import cancel_until_done, durable_config
from services.common.fold import TERMINAL
from services.common.history import HistoryError, JobHistory, load_job, load_lineage
from services.common.settings import Settings
from services.common.store import AppendConflictError, EventStore
from services.runner.loop import JobLoop, LoopContext
from services.runner.model import ModelClient

__all__ = ["RunnerService"]

log = logging.getLogger(__name__)

_RETRY_EMPTY_SECONDS = 2.0
_STALE_READ_PAUSE_SECONDS = 0.25

_MAX_FILE_BYTES = 256 * 1024
"""Largest file a tool may write, in bytes. The runner lowers it to a quarter of the server's max
payload, because the content travels twice in one turn's event: in the tool input and in the change."""


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
        self._job_loop: JobLoop | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._max_file_bytes = _MAX_FILE_BYTES

    async def run(self) -> None:
        """Pull and run jobs until `stop` is called."""
        js = self._store.js
        await self._ensure_consumer()
        subscription = await js.pull_subscribe_bind(topology.RUNNER_CONSUMER, topology.EVENTS_STREAM)
        self._subscription = subscription
        max_payload = int(self._store.nc.max_payload)
        job_loop = JobLoop(store=self._store, model=self._model, settings=self._settings, max_payload=max_payload)
        self._job_loop = job_loop
        self._max_file_bytes = min(_MAX_FILE_BYTES, max_payload // 4)
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
                if self._stopping.is_set():
                    break
                log.exception("fetching work failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            if self._stopping.is_set():
                # Fetched while stopping: hand the work back untouched so another runner takes it now.
                for message in messages:
                    with contextlib.suppress(Exception):
                        await message.nak()
                self._slots.release()
                break
            for message in messages:
                job_id = topology.job_id_from_subject(message.subject)
                task = asyncio.create_task(self._handle(message, job_id, job_loop), name=job_id)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop fetching and hand every running job back to the queue for another runner.

        A job waiting on the model is handed back at once. A job running tools or appending is
        handed back right after its turn is recorded. Jobs still busy after `shutdown_grace`
        seconds are cancelled and handed back without their current turn.
        """
        self._stopping.set()
        # Close the pull subscription before handing jobs back: with a fetch still open, the server
        # would deliver a returned job straight back to this runner, which is about to exit.
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        if self._job_loop is not None:
            self._job_loop.request_stop()
        running = list(self._tasks)
        if running:
            jobs = ", ".join(sorted(task.get_name() for task in running))
            log.info("runner %s stopping: handing back %d running job(s): %s", self.runner_id, len(running), jobs)
            _, late = await asyncio.wait(running, timeout=self._settings.shutdown_grace)
            await asyncio.gather(*(cancel_until_done(task) for task in late))

    async def run_once(self, job_id: str) -> str:
        """Run one job outside the queue, without heartbeats; return how it ended (`lost` if another runner won)."""
        if self._job_loop is None:
            max_payload = int(self._store.nc.max_payload)
            self._job_loop = JobLoop(
                store=self._store, model=self._model, settings=self._settings, max_payload=max_payload
            )
            self._max_file_bytes = min(_MAX_FILE_BYTES, max_payload // 4)
        return await self._run_job(job_id, self._job_loop)

    def workspace_path(self, job_id: str) -> Path:
        """Return this runner's checkout of a job.

        Each runner has its own, so a stale runner that has not yet noticed a takeover cannot
        change the files of the runner that took the job over.
        """
        return self._settings.resolved_workspaces_dir() / job_id / self.runner_id

    def _remove_other_workspaces(self, job_id: str) -> None:
        # Checkouts of earlier attempts are never reused: a workspace is always rebuilt from events.
        parent = self._settings.resolved_workspaces_dir() / job_id
        for path in parent.iterdir():
            if path.name != self.runner_id and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    async def _ensure_consumer(self) -> None:
        # An existing durable keeps its old settings when bound, so declare it explicitly every start.
        config = durable_config(topology.RUNNER_CONSUMER, [topology.WORK_FILTER], ack_wait=self._settings.lease_seconds)
        await self._store.js.add_consumer(topology.EVENTS_STREAM, config=config)

    async def _handle(self, message: Msg, job_id: str, job_loop: JobLoop) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(message, job_id))
        try:
            try:
                outcome = await self._run_job(job_id, job_loop, request_sequence=message.metadata.sequence.stream)
            finally:
                await cancel_until_done(heartbeat)
            await self._settle(message, job_id, outcome)
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
            self._slots.release()

    async def _settle(self, message: Msg, job_id: str, outcome: str) -> None:
        if outcome == "lost":
            # Another runner owns the job and its work item now; neither ack nor nak it.
            return
        if outcome == "retry":
            await message.nak(delay=min(self._settings.lease_seconds, _RETRY_EMPTY_SECONDS))
            return
        if outcome == "handed_back":
            # No delay: the history is consistent after the last append, so another runner may go on now.
            log.info("job %s: handed back to the queue", job_id)
            await message.nak()
            return
        await message.ack()

    async def _run_job(self, job_id: str, job_loop: JobLoop, *, request_sequence: int = 0) -> str:
        try:
            history = await self._load_current(job_id, request_sequence)
        except HistoryError as exc:
            log.error("job %s: unreadable history, not running it: %s", job_id, exc)
            return "done"
        if history is None and not await self._was_deleted(job_id):
            # This runner holds the job's request, so a history that reads back empty or without it
            # was served during a leader election or a restart. Retry later instead of dropping the job.
            log.warning("job %s: its history read back empty; retrying in %.0fs", job_id, _RETRY_EMPTY_SECONDS)
            return "retry"
        if history is None or history.checkpoint is None or history.checkpoint.job_status in TERMINAL:
            return "done"
        if history.checkpoint.cancel_requested:
            await self._store.append(
                JobCancelled(job_id=job_id, at=now_iso(), turns=history.checkpoint.turns),
                expected_last=history.last_sequence,
            )
            return "done"

        try:
            lineage = await load_lineage(self._store, job_id)
        except HistoryError as exc:
            # A resume chain whose earlier history was deleted or is unreadable will never load: give up.
            return await self._fail_setup(
                job_id, history.last_sequence, history.checkpoint.turns, str(exc), kind="history_unreadable"
            )
        attempt = len(history.starts()) + 1
        try:
            source = repository_path(self._settings.resolved_repos_dir(), lineage.repository)
            workspace, base_commit = await prepare_checkout(
                source,
                self.workspace_path(job_id),
                lineage.base_commit,
                lineage.changes(),
                max_output_bytes=self._settings.tool_output_bytes,
                max_file_bytes=self._max_file_bytes,
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
        await asyncio.to_thread(self._remove_other_workspaces, job_id)
        context = LoopContext(job_id=job_id, lineage=lineage, workspace=workspace, expected_last=expected)
        return await job_loop.run(context)

    async def _load_current(self, job_id: str, request_sequence: int) -> JobHistory | None:
        """Load the job's history, re-reading while it lacks the request this runner was handed.

        In a cluster a follower may serve the read before it has stored the request that the
        consumer delivered. Re-reading here, while heartbeats hold the work item, starts the job
        now rather than after the redelivery delay of a handed-back item.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.store_retry_window
        while True:
            history = await load_job(self._store, job_id)
            if history is not None and history.last_sequence >= request_sequence:
                return history
            if loop.time() + _STALE_READ_PAUSE_SECONDS > deadline or await self._was_deleted(job_id):
                return history
            log.info("job %s: history read lacks its request (sequence %d); reading again", job_id, request_sequence)
            await asyncio.sleep(_STALE_READ_PAUSE_SECONDS)

    async def _was_deleted(self, job_id: str) -> bool:
        stored = await self._store.read(job_id)
        return any(isinstance(item.event, CheckpointDeleted) for item in stored)

    async def _fail_setup(
        self, job_id: str, expected: int, turns: int, detail: str, *, kind: str = "workspace_error"
    ) -> str:
        log.error("job %s: cannot start (%s): %s", job_id, kind, detail)
        failed = JobFailed(job_id=job_id, at=now_iso(), kind=kind, message=detail, retryable=False, turns=turns)
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
