"""The notifier against a real nats-server and a loopback receiver: retries, signature, delivery id, crash."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from contracts.events import CallbackDelivered, CallbackFailed, JobCompleted
from services.common.clock import now, to_iso
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.notifier.delivery import CallbackDeliverer
from services.notifier.service import NotifierService

SECRET = "callback-secret-for-tests"
TURNLOG = str(Path(sys.executable).parent / "turnlog")


def settings_for(url: str, **extra: Any) -> Settings:
    return Settings(
        nats_url=url,
        callback_secret=SECRET,
        callback_backoff=0.05,
        callback_backoff_max=0.2,
        callback_deadline=10,
        allow_private_callbacks=True,
        consumer_ack_wait=2,
        public_url="https://turnlog.example.com",
        **extra,
    )


async def outcomes(runtime: Runtime, job_id: str) -> list[Any]:
    return [
        stored.event
        for stored in await runtime.store.read(job_id)
        if isinstance(stored.event, CallbackDelivered | CallbackFailed)
    ]


async def test_callback_retried_until_accepted(
    runtime: Runtime, jobs: Any, receiver: Callable[..., Awaitable[Any]], until: Any, nats_server: Any
) -> None:
    target = await receiver([503, 500, 200])
    job_id = await jobs.job(now(), callback_url=target.url)
    end = await jobs.append(JobCompleted(job_id=job_id, at=to_iso(now()), summary="Added error handling", turns=2))

    notifier = NotifierService(store=runtime.store, settings=settings_for(nats_server.url))
    task = asyncio.create_task(notifier.run())
    try:
        await until(lambda: _has_outcome(runtime, job_id))
    finally:
        await notifier.stop()
        task.cancel()

    assert len(target.requests) == 3
    delivery_ids = {request.headers["x-turnlog-delivery"] for request in target.requests}
    assert len(delivery_ids) == 1
    assert [request.headers["x-turnlog-attempt"] for request in target.requests] == ["1", "2", "3"]
    for request in target.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-turnlog-signature"] == expected
        assert request.body == target.requests[0].body

    document = json.loads(target.requests[0].body)
    assert document["jobId"] == job_id
    assert document["status"] == "completed"
    assert document["turns"] == 2
    assert document["maxTurns"] == 10
    assert document["summary"] == "Added error handling"
    assert document["checkpointUrl"] == f"https://turnlog.example.com/checkpoints/{job_id}"
    assert document["deliveryId"] == delivery_ids.pop()
    assert document["usage"]["inputTokens"] == 20

    recorded = await outcomes(runtime, job_id)
    assert len(recorded) == 1
    assert isinstance(recorded[0], CallbackDelivered)
    assert recorded[0].attempts == 3
    assert recorded[0].status == 200
    assert recorded[0].delivery_id == document["deliveryId"]
    assert (await jobs.types(job_id))[-2:] == ["job.completed.v1", "callback.delivered.v1"]
    checkpoint = (await runtime.store.read(job_id))[-1]
    assert checkpoint.sequence > end


async def test_callback_rejected_records_failure(
    runtime: Runtime, jobs: Any, receiver: Callable[..., Awaitable[Any]], until: Any, nats_server: Any
) -> None:
    target = await receiver([404])
    job_id = await jobs.job(now(), callback_url=target.url)
    await jobs.fail(job_id, now(), kind="model_rejected", retryable=False)

    notifier = NotifierService(store=runtime.store, settings=settings_for(nats_server.url))
    task = asyncio.create_task(notifier.run())
    try:
        await until(lambda: _has_outcome(runtime, job_id))
    finally:
        await notifier.stop()
        task.cancel()

    recorded = await outcomes(runtime, job_id)
    assert len(target.requests) == 1
    assert json.loads(target.requests[0].body)["failure"]["kind"] == "model_rejected"
    assert isinstance(recorded[0], CallbackFailed)
    assert recorded[0].attempts == 1
    assert recorded[0].last_error == "the receiver answered 404"


async def test_retry_after_sets_delay(receiver: Callable[..., Awaitable[Any]]) -> None:
    target = await receiver([429, 200], **{"retry-after": "7"})
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async with httpx.AsyncClient() as client:
        deliverer = CallbackDeliverer(
            client, deadline=60, backoff=1, backoff_max=30, allow_private=True, sleep=fake_sleep
        )
        outcome = await deliverer.deliver(target.url, b"{}", {"X-Turnlog-Delivery": "d1"})
        assert outcome.delivered
        assert outcome.attempts == 2
        assert slept == [7.0]

        beyond = await receiver([429], **{"retry-after": "120"})
        gave_up = await deliverer.deliver(beyond.url, b"{}", {})
        assert not gave_up.delivered
        assert gave_up.attempts == 1
        assert gave_up.last_error == "the receiver answered 429"


async def test_private_callback_rejected_by_default(receiver: Callable[..., Awaitable[Any]]) -> None:
    target = await receiver([200])
    async with httpx.AsyncClient() as client:
        deliverer = CallbackDeliverer(client, deadline=5, backoff=0.01, backoff_max=0.1, allow_private=False)
        outcome = await deliverer.deliver(target.url, b"{}", {})
    assert not outcome.delivered
    assert target.requests == []
    assert "resolves to the non-public address 127.0.0.1" in outcome.last_error


async def test_killed_notifier_redelivers_after_restart(
    runtime: Runtime, jobs: Any, receiver: Callable[..., Awaitable[Any]], until: Any, nats_server: Any
) -> None:
    target = await receiver([None, 200])
    job_id = await jobs.job(now(), callback_url=target.url)
    await jobs.append(JobCompleted(job_id=job_id, at=to_iso(now()), summary="done", turns=2))

    env = {key: value for key, value in os.environ.items() if not key.startswith("TURNLOG_")}
    env.update(
        TURNLOG_NATS_URL=nats_server.url,
        TURNLOG_CALLBACK_SECRET=SECRET,
        TURNLOG_ALLOW_PRIVATE_CALLBACKS="1",
        TURNLOG_CONSUMER_ACK_WAIT="1",
        TURNLOG_CALLBACK_TIMEOUT="60",
    )
    first = subprocess.Popen([TURNLOG, "serve", "notifier"], env=env, stderr=subprocess.DEVNULL)
    try:
        await until(lambda: _received(target, 1), timeout=30)
        # Killed while the receiver keeps the first attempt open: nothing was recorded or acked.
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert await outcomes(runtime, job_id) == []
    finally:
        first.kill()

    second = subprocess.Popen([TURNLOG, "serve", "notifier"], env=env, stderr=subprocess.DEVNULL)
    try:
        await until(lambda: _has_outcome(runtime, job_id), timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    assert len(target.requests) == 2
    assert target.requests[0].headers["x-turnlog-delivery"] == target.requests[1].headers["x-turnlog-delivery"]
    assert target.requests[0].body == target.requests[1].body
    recorded = await outcomes(runtime, job_id)
    assert len(recorded) == 1
    assert isinstance(recorded[0], CallbackDelivered)
    assert recorded[0].attempts == 1


async def _has_outcome(runtime: Runtime, job_id: str) -> bool:
    return bool(await outcomes(runtime, job_id))


async def _received(target: Any, count: int) -> bool:
    return len(target.requests) >= count
