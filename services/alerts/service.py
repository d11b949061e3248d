"""The alerts service: feeds events, checkpoints and core NATS signals to the rules and sends what they raise."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError, NotFoundError

from contracts import topology
from contracts.codec import EventDecodeError, decode_event
from contracts.events import Event, JobFailed
from services.alerts.gate import SharedAlertGate
from services.alerts.rules import Alert, AlertEngine
from services.alerts.settings import AlertSettings
from services.api.state import list_checkpoints, live_view
from services.common.clock import now
from services.common.history import HistoryError, load_job
from services.common.runtime import Runtime

__all__ = ["ALERTS_CONSUMER", "ALERT_FILTERS", "AlertService", "alert_subject"]

log = logging.getLogger(__name__)

ALERTS_CONSUMER = "alerts"
ALERT_FILTERS = [
    f"turnlog.events.*.{topology.EVENT_KINDS[tag]}"
    for tag in ("job.completed.v1", "job.failed.v1", "job.cancelled.v1", "job.resumed.v1")
]
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_WEBHOOK_ATTEMPTS = 3


def alert_subject(rule: str) -> str:
    """Return the core NATS subject alerts of `rule` are published on."""
    return f"turnlog.alerts.{rule}"


class AlertService:
    """Runs the rules; the clock is injectable so tests can move time."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        settings: AlertSettings,
        consumer: str = ALERTS_CONSUMER,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._consumer = consumer
        self._clock = clock
        self.engine = AlertEngine(settings)
        self._gate: SharedAlertGate | None = None
        self._http = httpx.AsyncClient(timeout=5.0)
        self._stopping = asyncio.Event()
        self._subscriptions: list[Subscription] = []
        self._webhook_tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Subscribe to dead letters, floods and the window's job ends, then consume and scan until stopped."""
        nc = self._runtime.nc
        # Open the shared gate first, so a missing bucket stops the start instead of a later alert.
        await self._shared_gate()
        self._subscriptions = [
            await nc.subscribe(topology.DEAD_LETTER_SUBJECT, cb=self._on_dead_letter),
            await nc.subscribe(topology.FLOOD_ALERT_SUBJECT, cb=self._on_flood),
        ]
        await self._follow_window()
        scanner = asyncio.create_task(self._scan_loop(), name="alerts-scan")
        try:
            await self._consume()
        finally:
            scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scanner

    def stop(self) -> None:
        """Ask the loops to end."""
        self._stopping.set()

    async def close(self) -> None:
        """Drop the core subscriptions and the webhook client."""
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        if self._webhook_tasks:
            await asyncio.wait(self._webhook_tasks, timeout=5)
        await self._http.aclose()

    async def send(self, alerts: list[Alert]) -> int:
        """Send each alert not sent within the dedup window to the log, NATS and the webhook; return how many."""
        moment = self._clock()
        gate = await self._shared_gate()
        sent = 0
        for alert in alerts:
            if not await gate.admit(alert, moment):
                continue
            sent += 1
            log.log(_LEVELS.get(alert.severity, logging.WARNING), "alert %s: %s", alert.rule, alert.message)
            document = alert.document(moment)
            await self._runtime.nc.publish(alert_subject(alert.rule), json.dumps(document).encode())
            if self._settings.webhook_url is not None:
                # In the background, so a slow webhook never holds up the event consumer.
                task = asyncio.create_task(self._post_webhook(self._settings.webhook_url.get_secret_value(), alert))
                self._webhook_tasks.add(task)
                task.add_done_callback(self._webhook_tasks.discard)
        return sent

    async def _shared_gate(self) -> SharedAlertGate:
        if self._gate is None:
            bucket = await self._runtime.js.key_value(topology.ALERT_BUCKET)
            self._gate = SharedAlertGate(bucket, self._settings.dedup_seconds)
        return self._gate

    async def scan(self) -> int:
        """Evaluate the checkpoint and projector rules once; return how many alerts were sent."""
        moment = self._clock()
        views = [
            await live_view(self._runtime, checkpoint, moment=moment)
            for checkpoint in await list_checkpoints(self._runtime)
        ]
        alerts = self.engine.on_checkpoints(views, moment)
        try:
            info = await self._runtime.js.consumer_info(topology.EVENTS_STREAM, topology.PROJECTOR_CONSUMER)
        except NotFoundError:
            info = None
        if info is not None:
            alerts.extend(self.engine.on_projector(int(info.num_pending or 0) + int(info.num_ack_pending or 0)))
        alerts.extend(self.engine.window_alerts(moment))
        return await self.send(alerts)

    async def _follow_window(self) -> None:
        """Feed every job end of the last window, then each new one, to this process's rule engine.

        The durable consumer splits events among alerts processes, so the window rules (failure
        rate, unresumed failures) count from an ordered consumer of their own in each process,
        one per event kind. Remembering an event is keyed by its sequence, so an event seen on
        both feeds counts once. Nothing is alerted here: the rules run on the next event or scan.
        """
        start = self._clock() - timedelta(seconds=self._settings.failure_window)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)
        for subject in ALERT_FILTERS:
            subscription = await self._runtime.js.subscribe(
                subject, stream=topology.EVENTS_STREAM, ordered_consumer=True, config=config, cb=self._on_window_event
            )
            self._subscriptions.append(subscription)

    async def _on_window_event(self, message: Msg) -> None:
        try:
            event = decode_event(message.data, sequence=message.metadata.sequence.stream)
        except EventDecodeError:
            # Skip it: the projector dead-letters undecodable events, and that raises dead_letter.
            return
        self.engine.remember(event, message.metadata.sequence.stream)

    async def _consume(self) -> None:
        js = self._runtime.js
        # New deployments start at the tail: alerts are about what happens from now on.
        config = ConsumerConfig(
            durable_name=self._consumer,
            filter_subjects=ALERT_FILTERS,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW,
            ack_wait=30.0,
            max_deliver=-1,
        )
        await js.add_consumer(topology.EVENTS_STREAM, config=config)
        subscription = await js.pull_subscribe_bind(self._consumer, topology.EVENTS_STREAM)
        log.info("alerts started on consumer %s", self._consumer)
        while not self._stopping.is_set():
            try:
                messages = await subscription.fetch(64, timeout=1.0)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                log.exception("fetching events for alerts failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                await self._on_event(message)

    async def _on_event(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            event = decode_event(message.data, sequence=sequence)
        except EventDecodeError:
            # Give up: the projector dead-letters undecodable events, and that raises dead_letter.
            await message.term()
            return
        try:
            resume_of = await self._resume_of(event)
            await self.send(self.engine.on_event(event, sequence, resume_of=resume_of, moment=self._clock()))
        except Exception:
            # Retry later: the job's history could not be read; the window ignores a repeated sequence.
            log.exception("alert rules for event %d of job %s failed; retrying in 2s", sequence, event.job_id)
            await message.nak(delay=2.0)
            return
        await message.ack()

    async def _resume_of(self, event: Event) -> str | None:
        if not isinstance(event, JobFailed):
            return None
        try:
            history = await load_job(self._runtime.store, event.job_id)
        except HistoryError:
            return None
        return history.request.resume_of if history else None

    async def _scan_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.scan()
            except Exception:
                log.exception("alert scan failed; retrying in %.0fs", self._settings.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.interval)

    async def _on_dead_letter(self, message: Msg) -> None:
        headers = message.headers or {}
        alerts = self.engine.on_dead_letter(
            headers.get("Turnlog-Subject", "?"), headers.get("Turnlog-Sequence", "?"), headers.get("Turnlog-Error", "")
        )
        await self.send(alerts)

    async def _on_flood(self, message: Msg) -> None:
        try:
            document: dict[str, Any] = json.loads(message.data)
            details: dict[str, Any] = document.get("details") or document
            repository, issue, count = str(details["repository"]), str(details["issue"]), int(details["count"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignored a malformed flood report on %s: %s", message.subject, exc)
            return
        await self.send(self.engine.on_flood(repository, issue, count))

    async def _post_webhook(self, url: str, alert: Alert) -> None:
        body = {"text": f"[turnlog {alert.severity}] {alert.rule}: {alert.message}"}
        for attempt in range(1, _WEBHOOK_ATTEMPTS + 1):
            try:
                response = await self._http.post(url, json=body)
            except httpx.HTTPError as exc:
                # Only the type: the message may contain the URL, which is a secret.
                error = type(exc).__name__
            else:
                if response.status_code < 300:
                    return
                error = f"the webhook answered {response.status_code}"
            if attempt < _WEBHOOK_ATTEMPTS:
                log.warning("alert webhook failed (%s); retrying in %ds", error, attempt)
                await asyncio.sleep(attempt)
            else:
                # Give up: the alert is already in the log and on NATS; the URL is a secret and not logged.
                log.error("alert webhook failed %d times, alert %s not posted: %s", attempt, alert.rule, error)
