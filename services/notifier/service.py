"""The notifier's durable consumer over terminal events: deliver, record the outcome, then ack."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import FetchTimeoutError

from contracts import topology
from contracts.checkpoint import Checkpoint
from contracts.codec import EventDecodeError, decode_event, event_tag
from contracts.events import CallbackDelivered, CallbackFailed, Event
from services.common.clock import now_iso
from services.common.consumers import bind_durable, cancel_until_done, durable_config
from services.common.fold import fold
from services.common.history import HistoryError, JobHistory, load_job
from services.common.resume import append_fact
from services.common.settings import Settings
from services.common.store import EventStore
from services.notifier.delivery import CallbackDeliverer, DeliveryOutcome, redact_url
from services.notifier.payload import build_document, delivery_id_for, outcome_recorded, sign, terminal_status

__all__ = ["NOTIFIER_CONSUMER", "TERMINAL_FILTERS", "NotifierService"]

log = logging.getLogger(__name__)

NOTIFIER_CONSUMER = "notifier"
TERMINAL_FILTERS = [
    f"turnlog.events.*.{topology.EVENT_KINDS[tag]}" for tag in ("job.completed.v1", "job.failed.v1", "job.cancelled.v1")
]
_RETRY_DELAY = 5.0


class NotifierService:
    """Delivers callbacks for terminal events; a message is acked only once the outcome event is stored."""

    def __init__(
        self,
        *,
        store: EventStore,
        settings: Settings,
        consumer: str = NOTIFIER_CONSUMER,
        deliverer: CallbackDeliverer | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._consumer = consumer
        self._http = httpx.AsyncClient(timeout=settings.callback_timeout, follow_redirects=False)
        self._deliverer = deliverer or CallbackDeliverer(
            self._http,
            deadline=settings.callback_deadline,
            backoff=settings.callback_backoff,
            backoff_max=settings.callback_backoff_max,
            allow_private=settings.allow_private_callbacks,
        )
        self._slots = asyncio.Semaphore(settings.callback_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume terminal events until `stop` is called."""
        js = self._store.js
        config = durable_config(self._consumer, list(TERMINAL_FILTERS), ack_wait=self._settings.consumer_ack_wait)
        subscription = await bind_durable(js, config)
        if self._settings.callback_secret is None:
            log.warning("TURNLOG_CALLBACK_SECRET is not set: callbacks are sent without X-Turnlog-Signature")
        log.info("notifier started on consumer %s", self._consumer)

        while not self._stopping.is_set():
            await self._slots.acquire()
            try:
                messages = await subscription.fetch(1, timeout=1.0)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                self._slots.release()
                continue
            except Exception:
                self._slots.release()
                log.exception("fetching terminal events failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                task = asyncio.create_task(self._guarded(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop fetching; deliveries in flight are abandoned unacked and redelivered to the next notifier."""
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._http.aclose()

    async def _guarded(self, message: Msg) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(message))
        try:
            await self._handle(message)
        except asyncio.CancelledError:
            await cancel_until_done(heartbeat)
            with contextlib.suppress(Exception):
                await message.nak()
            raise
        except Exception:
            # Retry later: reading or appending failed (NATS restarting, a timeout); the callback is
            # delivered again, with the same delivery id, so receivers deduplicate it.
            log.exception("callback of %s not recorded; retrying in %.0fs", message.subject, _RETRY_DELAY)
            await cancel_until_done(heartbeat)
            with contextlib.suppress(Exception):
                await message.nak(delay=_RETRY_DELAY)
        finally:
            await cancel_until_done(heartbeat)
            self._slots.release()

    async def _handle(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            event = decode_event(message.data, sequence=sequence)
        except EventDecodeError as exc:
            # Give up: it will not decode on a retry either; the projector dead-letters it.
            log.error("terminal event %d on %s cannot be decoded; skipped: %s", sequence, message.subject, exc)
            await message.term()
            return
        status = terminal_status(event)
        try:
            history = await load_job(self._store, event.job_id)
        except HistoryError as exc:
            log.error("job %s: history unreadable, no callback sent: %s", event.job_id, exc)
            await message.term()
            return
        if status is None or history is None or history.checkpoint is None or not history.request.callback_url:
            await message.ack()
            return

        delivery_id = delivery_id_for(event.job_id, sequence)
        if outcome_recorded(history, delivery_id):
            await message.ack()
            return
        url = history.request.callback_url
        body = self._document(history, history.checkpoint, sequence, status, delivery_id)
        outcome = await self._deliverer.deliver(url, body, self._headers(body, delivery_id, event))
        await self._record(event.job_id, url, delivery_id, outcome)
        await message.ack()

    def _document(
        self, history: JobHistory, current: Checkpoint, sequence: int, status: str, delivery_id: str
    ) -> bytes:
        # The job as its terminal event left it; `current` adds what came after, such as a resume.
        until_end = [(item.sequence, item.event) for item in history.events if item.event and item.sequence <= sequence]
        return build_document(
            ended=fold(until_end) or current,
            current=current,
            status=status,
            delivery_id=delivery_id,
            public_url=self._settings.public_url,
        )

    def _headers(self, body: bytes, delivery_id: str, event: Event) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "turnlog-notifier",
            "X-Turnlog-Delivery": delivery_id,
            "X-Turnlog-Event": event_tag(event),
        }
        if self._settings.callback_secret is not None:
            headers["X-Turnlog-Signature"] = sign(body, self._settings.callback_secret.get_secret_value().encode())
        return headers

    async def _record(self, job_id: str, url: str, delivery_id: str, outcome: DeliveryOutcome) -> None:
        def build(history: JobHistory) -> Event | None:
            if outcome_recorded(history, delivery_id):
                return None
            if outcome.delivered:
                return CallbackDelivered(
                    job_id=job_id,
                    at=now_iso(),
                    url=url,
                    delivery_id=delivery_id,
                    attempts=outcome.attempts,
                    status=outcome.status or 0,
                )
            return CallbackFailed(
                job_id=job_id,
                at=now_iso(),
                url=url,
                delivery_id=delivery_id,
                attempts=outcome.attempts,
                last_error=outcome.last_error[:500],
            )

        _, sequence = await append_fact(self._store, job_id, build)
        log.info(
            "job %s: callback %s to %s %s after %d attempts (event %s)",
            job_id,
            delivery_id,
            redact_url(url),
            "delivered" if outcome.delivered else "failed",
            outcome.attempts,
            sequence,
        )

    async def _heartbeat(self, message: Msg) -> None:
        """Tell JetStream the delivery is still in progress, so it is not redelivered meanwhile."""
        interval = max(self._settings.consumer_ack_wait / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                await message.in_progress()
            except Exception as exc:
                log.warning("in-progress ack for %s failed (%s); retrying in %.1fs", message.subject, exc, interval)
