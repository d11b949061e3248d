"""The event store: concurrency-checked appends to a job's history and lean reads of it."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from contracts import topology
from contracts.codec import EventDecodeError, decode_event, encode_event, event_tag
from contracts.events import Event

__all__ = [
    "AppendConflictError",
    "EventStore",
    "StoreError",
    "StoredEvent",
]

log = logging.getLogger(__name__)

_WRONG_LAST_SEQUENCE = 10071
_READ_BATCH = 256
_RETRY_WINDOW_SECONDS = 30.0
"""How long an append retries "no responders" and timeouts. A follower waits 4 to 9 s for a lost
leader before it campaigns (the election timeout bounds in nats-server's server/raft.go). After a
leader kill, the election took 4.5 s on an idle host and more than 8 s on a loaded 2-core CI
machine, so the window leaves room for a second election round."""


class StoreError(Exception):
    """Base error of the event store."""


class AppendConflictError(StoreError):
    """Another writer appended to the job's history first; this writer must stop working on the job."""

    def __init__(self, job_id: str, expected: int, detail: str) -> None:
        self.job_id = job_id
        self.expected = expected
        self.detail = detail
        super().__init__(
            f"job {job_id}: history moved past sequence {expected} ({detail}); "
            "another writer owns the job, so this one stops"
        )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a job's history with its stream position; `event` is None when it cannot be decoded."""

    sequence: int
    subject: str
    time: str
    event: Event | None
    error: EventDecodeError | None = None


class EventStore:
    """Appends and reads job histories in the events stream."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        publish_timeout: float = 5.0,
        retry_window: float = _RETRY_WINDOW_SECONDS,
    ) -> None:
        self._nc = nc
        self._js = js
        self._publish_timeout = publish_timeout
        self._retry_window = retry_window

    @property
    def nc(self) -> Client:
        """Return the NATS connection the store uses."""
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """Return the JetStream context the store writes through."""
        return self._js

    async def append(self, event: Event, *, expected_last: int) -> int:
        """Append one event if the job's last sequence is still `expected_last` (0: no history yet).

        Retries through timeouts and leader elections with the same message id. Because the server
        checks the expected sequence before it deduplicates, a retry whose first attempt landed
        gets "wrong last sequence" back. The last message's id tells that case from a real conflict.
        """
        msg_id = uuid.uuid4().hex
        subject = topology.event_subject(event.job_id, event_tag(event))
        headers = {
            "Nats-Msg-Id": msg_id,
            "Nats-Expected-Last-Subject-Sequence": str(expected_last),
            "Nats-Expected-Last-Subject-Sequence-Subject": topology.job_filter(event.job_id),
        }
        payload = encode_event(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_window
        attempts = 0
        while True:
            attempts += 1
            try:
                ack = await self._js.publish(subject, payload, timeout=self._publish_timeout, headers=headers)
                sequence: int = ack.seq
                return sequence
            except APIError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise
                if attempts > 1:
                    landed = await self._landed_sequence(event.job_id, msg_id)
                    if landed is not None:
                        return landed
                raise AppendConflictError(event.job_id, expected_last, str(exc.description)) from exc
            except (NoStreamResponseError, NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
                if loop.time() + 0.25 > deadline:
                    raise StoreError(
                        f"append to {subject} failed after {attempts} attempts: {exc!r}; is NATS reachable?"
                    ) from exc
                log.warning("append to %s failed (%r); retrying in 0.25s", subject, exc)
                await asyncio.sleep(0.25)

    async def append_batch(self, items: list[tuple[Event, int]]) -> int:
        """Append several events atomically, each checked against its job's expected last sequence.

        Uses JetStream atomic batch publish: either every event is stored or none is. Returns the
        sequence of the last event.
        """
        batch_id = uuid.uuid4().hex
        last = len(items)
        for index, (event, expected_last) in enumerate(items, start=1):
            headers = {
                "Nats-Batch-Id": batch_id,
                "Nats-Batch-Sequence": str(index),
                "Nats-Expected-Last-Subject-Sequence": str(expected_last),
                "Nats-Expected-Last-Subject-Sequence-Subject": topology.job_filter(event.job_id),
            }
            subject = topology.event_subject(event.job_id, event_tag(event))
            payload = encode_event(event)
            if index < last:
                await self._nc.publish(subject, payload, headers=headers)
                continue
            headers["Nats-Batch-Commit"] = "1"
            reply = await self._nc.request(subject, payload, timeout=self._publish_timeout, headers=headers)
            return self._batch_sequence(reply, items)
        raise ValueError("append_batch needs at least one event")

    def _batch_sequence(self, reply: Msg, items: list[tuple[Event, int]]) -> int:
        answer = json.loads(reply.data or b"{}")
        error = answer.get("error")
        if error is None:
            return int(answer["seq"])
        if error.get("err_code") == _WRONG_LAST_SEQUENCE:
            first_event, first_expected = items[0]
            raise AppendConflictError(first_event.job_id, first_expected, str(error.get("description")))
        raise StoreError(f"atomic batch rejected: {error.get('description')} (code {error.get('err_code')})")

    async def _landed_sequence(self, job_id: str, msg_id: str) -> int | None:
        """Return the sequence of the job's last event when it carries `msg_id`, else None."""
        try:
            msg = await self._js.get_last_msg(topology.EVENTS_STREAM, topology.job_filter(job_id), direct=True)
        except NotFoundError:
            return None
        headers = msg.headers or {}
        return int(msg.seq or 0) if headers.get("Nats-Msg-Id") == msg_id else None

    async def last_sequence(self, job_id: str) -> int:
        """Return the stream sequence of the job's last event, 0 when it has none."""
        try:
            msg = await self._js.get_last_msg(topology.EVENTS_STREAM, topology.job_filter(job_id), direct=True)
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def read(self, job_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Read the job's events in order with batched direct gets on the job's subject filter."""
        events: list[StoredEvent] = []
        start = after + 1
        while limit is None or len(events) < limit:
            want = _READ_BATCH if limit is None else min(_READ_BATCH, limit - len(events))
            batch, pending = await self._direct_batch_retrying(topology.job_filter(job_id), start, want)
            events.extend(batch)
            if not batch or pending == 0:
                break
            start = batch[-1].sequence + 1
        return events

    async def _direct_batch_retrying(
        self, subject_filter: str, start: int, batch: int
    ) -> tuple[list[StoredEvent], int]:
        """Run one batch direct get, retrying through a leader election like `append` does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_window
        while True:
            try:
                return await self._direct_batch(subject_filter, start, batch)
            except (_DirectGetUnavailableError, TimeoutError) as exc:
                if loop.time() + 0.25 > deadline:
                    raise StoreError(
                        f"reading {subject_filter} from sequence {start} failed: {exc!r}; is NATS reachable?"
                    ) from exc
                log.warning("reading %s failed (%r); retrying in 0.25s", subject_filter, exc)
                await asyncio.sleep(0.25)

    async def _direct_batch(self, subject_filter: str, start: int, batch: int) -> tuple[list[StoredEvent], int]:
        inbox = self._nc.new_inbox()
        received: list[StoredEvent] = []
        done = asyncio.get_running_loop().create_future()

        async def on_message(msg: Msg) -> None:
            headers = msg.headers or {}
            status = headers.get("Status")
            if status:
                if done.done():
                    return
                if status == "204":
                    done.set_result(int(headers.get("Nats-Num-Pending", "0") or 0))
                elif status == "404":
                    done.set_result(0)
                else:
                    # A 503 "no responders" arrives while the stream has no leader: it does not mean
                    # an empty history, and a runner that took it for one would drop the job.
                    done.set_exception(_DirectGetUnavailableError(status, headers.get("Description", "")))
                return
            received.append(_stored(msg))
            if len(received) >= batch and not done.done():
                done.set_result(int(headers.get("Nats-Num-Pending", "1") or 1))

        sub = await self._nc.subscribe(inbox, cb=on_message)
        try:
            request = {"seq": start, "next_by_subj": subject_filter, "batch": batch}
            await self._nc.publish(
                f"$JS.API.DIRECT.GET.{topology.EVENTS_STREAM}", json.dumps(request).encode(), reply=inbox
            )
            pending = await asyncio.wait_for(done, timeout=self._publish_timeout)
        finally:
            await sub.unsubscribe()
        return received, pending

    async def purge(self, job_id: str, *, before: int) -> None:
        """Remove the job's events below sequence `before`, keeping its deletion tombstone at `before`.

        The tombstone stays so that a late redelivery of the original request cannot recreate the job.
        """
        await self._js.purge_stream(topology.EVENTS_STREAM, seq=before, subject=topology.job_filter(job_id))


class _DirectGetUnavailableError(StoreError):
    """A direct get answered with a status other than "no message" or "end of batch"."""

    def __init__(self, status: str, description: str) -> None:
        self.status = status
        super().__init__(f"direct get answered status {status} {description}".strip())


def _stored(msg: Msg) -> StoredEvent:
    headers = msg.headers or {}
    sequence = int(headers.get("Nats-Sequence", "0"))
    try:
        event: Event | None = decode_event(msg.data, sequence=sequence)
        error = None
    except EventDecodeError as exc:
        event, error = None, exc
    return StoredEvent(
        sequence=sequence,
        subject=headers.get("Nats-Subject", ""),
        time=headers.get("Nats-Time-Stamp", ""),
        event=event,
        error=error,
    )
