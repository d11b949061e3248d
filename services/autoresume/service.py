"""The auto-resume consumer over failed events: wait for the retry time, then resume through the atomic batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import FetchTimeoutError

from contracts import topology
from contracts.checkpoint import Checkpoint
from contracts.codec import EventDecodeError, decode_event
from contracts.events import AutoResumeDecided, Event, JobFailed
from services.autoresume.policy import Decision, decide
from services.common.clock import now, now_iso, parse_iso
from services.common.consumers import bind_durable, durable_config
from services.common.history import HistoryError, JobHistory, load_job
from services.common.ids import derived_job_id
from services.common.resume import append_fact, chain_links, commit_resume, plan_resume
from services.common.settings import Settings
from services.common.store import AppendConflictError, EventStore

__all__ = ["AUTORESUME_CONSUMER", "AutoResumeService"]

log = logging.getLogger(__name__)

AUTORESUME_CONSUMER = "autoresume"
_FAILED_FILTER = f"turnlog.events.*.{topology.EVENT_KINDS['job.failed.v1']}"
_RETRY_DELAY = 5.0
_RESUME_ATTEMPTS = 5


class AutoResumeService:
    """Looks at every failed job; acks once it resumed or skipped it for good, naks while it waits."""

    def __init__(
        self,
        *,
        store: EventStore,
        settings: Settings,
        consumer: str = AUTORESUME_CONSUMER,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self._store = store
        self._settings = settings
        self._consumer = consumer
        self._clock = clock
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume failed events until `stop` is called."""
        js = self._store.js
        config = durable_config(self._consumer, [_FAILED_FILTER], ack_wait=self._settings.consumer_ack_wait)
        subscription = await bind_durable(js, config)
        log.info(
            "auto-resume started on consumer %s: at most %d resumes per chain",
            self._consumer,
            self._settings.auto_resume_max_chain,
        )
        while not self._stopping.is_set():
            try:
                messages = await subscription.fetch(16, timeout=1.0)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                log.exception("fetching failed events failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                await self._guarded(message)

    def stop(self) -> None:
        """Ask the consume loop to end after its current batch."""
        self._stopping.set()

    async def _guarded(self, message: Msg) -> None:
        try:
            await self._handle(message)
        except Exception:
            # Retry later: the decision is re-made from the history, so a repeat changes nothing twice.
            log.exception("auto-resume of %s failed; retrying in %.0fs", message.subject, _RETRY_DELAY)
            await message.nak(delay=_RETRY_DELAY)

    async def _handle(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            event = decode_event(message.data, sequence=sequence)
        except EventDecodeError as exc:
            log.error("failed event %d on %s cannot be decoded; skipped: %s", sequence, message.subject, exc)
            await message.term()
            return
        if not isinstance(event, JobFailed):
            await message.ack()
            return
        try:
            delay = await self.process(event, sequence)
        except HistoryError as exc:
            log.error("job %s: history unreadable, not resuming it: %s", event.job_id, exc)
            await message.term()
            return
        if delay is None:
            await message.ack()
        else:
            await message.nak(delay=delay)

    async def process(self, failed: JobFailed, sequence: int) -> float | None:
        """Decide and act on one failure; return the seconds to wait before looking again, None when done."""
        job_id = failed.job_id
        new_job_id = derived_job_id("autoresume", job_id, str(sequence))
        for _ in range(_RESUME_ATTEMPTS):
            history = await load_job(self._store, job_id)
            if history is None or history.checkpoint is None:
                return None
            checkpoint = history.checkpoint
            if checkpoint.job_status == "resumed" and checkpoint.resumed_as == new_job_id:
                # Resumed by this service (maybe by a twin, maybe before a crash): make sure it is on record.
                await self._record_resumed(job_id, new_job_id, checkpoint)
                return None

            links = await chain_links(checkpoint, self._checkpoint_of)
            decision = decide(
                checkpoint,
                failed_at=parse_iso(failed.at),
                links=links,
                now=self._clock(),
                max_chain=self._settings.auto_resume_max_chain,
                backoff=self._settings.auto_resume_backoff,
            )
            if decision.action == "ignore":
                return None
            if decision.action == "skip":
                await self._record_skip(job_id, decision)
                return None
            if decision.action == "wait":
                moment = self._clock()
                remaining = ((decision.not_before or moment) - moment).total_seconds()
                return max(0.05, min(remaining, self._settings.auto_resume_recheck))

            plan = plan_resume(history, new_job_id=new_job_id, from_turn=checkpoint.turns, at=now_iso())
            try:
                await commit_resume(self._store, plan)
            except AppendConflictError:
                # Another writer moved the history: a twin resumed it, a user did, or a callback was
                # recorded. The next pass re-reads the history and tells these apart.
                log.info("job %s: history moved while resuming; deciding again", job_id)
                continue
            log.info("job %s: resumed automatically as job %s (%s)", job_id, new_job_id, decision.reason)
            await self._record_resumed(job_id, new_job_id, checkpoint)
            return None
        return _RETRY_DELAY

    async def _checkpoint_of(self, job_id: str) -> Checkpoint | None:
        try:
            history = await load_job(self._store, job_id)
        except HistoryError:
            return None
        return history.checkpoint if history else None

    async def _record_resumed(self, job_id: str, new_job_id: str, checkpoint: Checkpoint) -> None:
        kind = checkpoint.failure.kind if checkpoint.failure else "a retryable failure"

        def build(history: JobHistory) -> Event | None:
            if _decided(history, "resumed", new_job_id):
                return None
            return AutoResumeDecided(
                job_id=job_id,
                at=now_iso(),
                decision="resumed",
                code="resumed",
                reason=f"failed with {kind}, which is retryable; resumed as job {new_job_id}",
                new_job_id=new_job_id,
            )

        await append_fact(self._store, job_id, build)

    async def _record_skip(self, job_id: str, decision: Decision) -> None:
        def build(history: JobHistory) -> Event | None:
            if _decided(history, decision.code, None):
                return None
            return AutoResumeDecided(
                job_id=job_id, at=now_iso(), decision="skipped", code=decision.code, reason=decision.reason
            )

        _, sequence = await append_fact(self._store, job_id, build)
        if sequence is not None:
            log.info("job %s: not resumed automatically: %s", job_id, decision.reason)


def _decided(history: JobHistory, code: str, new_job_id: str | None) -> bool:
    """Tell whether the history already records a decision with `code` (and `new_job_id`, when given)."""
    for stored in history.events:
        event = stored.event
        if not isinstance(event, AutoResumeDecided) or event.code != code:
            continue
        if new_job_id is None or event.new_job_id == new_job_id:
            return True
    return False
