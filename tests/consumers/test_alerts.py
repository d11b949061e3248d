"""Alert rules on a real nats-server: each fires once on `turnlog.alerts.<rule>`, then not again within the window."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import topology
from contracts.events import JobCompleted, JobResumed
from contracts.lease import Lease
from services.alerts.gate import SharedAlertGate, gate_key
from services.alerts.rules import Alert, AlertGate
from services.alerts.service import AlertService
from services.alerts.settings import AlertSettings
from services.common.clock import now, to_iso
from services.common.runtime import Runtime


class Clock:
    def __init__(self) -> None:
        self.moment = now()

    def __call__(self) -> Any:
        return self.moment


@pytest.fixture
async def received(runtime: Runtime) -> Any:
    alerts: list[dict[str, Any]] = []

    async def collect(message: Any) -> None:
        alerts.append({"subject": message.subject, **json.loads(message.data)})

    subscription = await runtime.nc.subscribe("turnlog.alerts.>", cb=collect)
    yield alerts
    await subscription.unsubscribe()


def rules_of(alerts: list[dict[str, Any]]) -> list[str]:
    # Every document under turnlog.alerts.> counts: the raw flood and dead-letter signals live elsewhere.
    return sorted(alert["rule"] for alert in alerts)


async def test_every_rule_fires_once(runtime: Runtime, jobs: Any, received: Any, until: Any) -> None:
    clock = Clock()
    settings = AlertSettings(
        failure_min_jobs=3,
        failure_rate=0.5,
        unresumed_failures=2,
        unknown_minutes=10,
        projector_lag=1,
        interval=3600,
    )
    service = AlertService(runtime=runtime, settings=settings, clock=clock)
    # A projector that never acknowledges anything: every event counts as lag.
    projector = ConsumerConfig(
        durable_name="projector", filter_subject="turnlog.events.>", ack_policy=AckPolicy.EXPLICIT
    )
    await runtime.js.add_consumer(topology.EVENTS_STREAM, config=projector)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: _consumer_ready(runtime))

        # A job that stopped reporting 20 minutes ago (no lease), and one near its maxTurns with a live lease.
        orphan = await jobs.job(clock.moment - timedelta(minutes=20), turns=3)
        busy = await jobs.job(clock.moment, turns=9)
        lease = Lease(runner_id="runner-1", expires_at=to_iso(clock.moment + timedelta(hours=1)))
        await runtime.leases.put(busy, msgspec.json.encode(lease))
        # Three failures, one of them of a resumed job, and no resumes since.
        first = await jobs.job(clock.moment)
        await jobs.fail(first, clock.moment, kind="overloaded")
        await jobs.append(JobResumed(job_id=first, at=to_iso(clock.moment), new_job_id="againfailed", from_turn=2))
        again = await jobs.job(clock.moment, job_id="againfailed", resume_of=first)
        await jobs.fail(again, clock.moment, kind="overloaded")
        third = await jobs.job(clock.moment)
        await jobs.fail(third, clock.moment, kind="model_rejected", retryable=False)
        await _publish_dead_letter(runtime, first)
        await runtime.nc.publish(
            topology.FLOOD_ALERT_SUBJECT,
            json.dumps(
                {"rule": "webhook_flood", "details": {"repository": "my-org/my-repo", "issue": 42, "count": 6}}
            ).encode(),
        )
        await until(lambda: _count(received, 8))
        await service.scan()

        expected = sorted([
            "job_failed", "job_failed", "job_failed", "resume_failed", "failure_rate", "unresumed_failures",
            "dead_letter", "webhook_flood", "job_unknown", "near_max_turns", "projector_lag",
        ])  # fmt: skip
        await until(lambda: _rules_are(received, expected))
        by_rule = {alert["rule"]: alert for alert in received}
        assert by_rule["resume_failed"]["jobId"] == again
        assert by_rule["job_unknown"]["jobId"] == orphan
        assert by_rule["near_max_turns"]["jobId"] == busy
        assert by_rule["job_failed"]["subject"] == "turnlog.alerts.job_failed"
        assert by_rule["failure_rate"]["details"] == {"failed": 3, "ended": 3, "rate": 1.0, "windowSeconds": 3600}
        assert by_rule["webhook_flood"]["details"]["count"] == 6
        assert by_rule["dead_letter"]["severity"] == "error"

        # The same conditions again inside the dedup window: nothing new.
        await jobs.append(JobCompleted(job_id=busy, at=to_iso(clock.moment), summary="ok", turns=9))
        await _publish_dead_letter(runtime, first)
        await service.scan()
        await asyncio.sleep(0.5)
        assert rules_of(received) == expected

        # After the window the still-orphaned job alerts again; the ended near-max job does not.
        clock.moment += timedelta(seconds=settings.dedup_seconds + 1)
        await service.scan()
        again_expected = ["failure_rate", "job_unknown", "projector_lag", "unresumed_failures"]
        await until(lambda: _count(received, len(expected) + len(again_expected)))
        assert rules_of(received) == sorted([*expected, *again_expected])

    finally:
        service.stop()
        await task
        await service.close()


def test_gate_admits_once_per_window() -> None:
    gate = AlertGate(600)
    alert = Alert(rule="job_failed", severity="error", message="m", key="job1")
    moment = now()
    assert gate.admit(alert, moment)
    assert not gate.admit(alert, moment + timedelta(seconds=599))
    assert gate.admit(Alert(rule="job_failed", severity="error", message="m", key="job2"), moment)
    assert gate.admit(alert, moment + timedelta(seconds=600))


async def test_gate_admits_once_across_processes(runtime: Runtime) -> None:
    bucket = await runtime.js.key_value(topology.ALERT_BUCKET)
    alert = Alert(rule="job_unknown", severity="warning", message="m", key="my-org/my-repo#42")
    moment = now()

    # Ten alerts processes see the same condition at once: exactly one sends it.
    gates = [SharedAlertGate(bucket, 600) for _ in range(10)]
    admitted = await asyncio.gather(*(gate.admit(alert, moment) for gate in gates))
    assert admitted.count(True) == 1

    # A restarted process (a new gate) still skips it inside the window, and sends it after.
    restarted = SharedAlertGate(bucket, 600)
    assert not await restarted.admit(alert, moment + timedelta(seconds=599))
    assert await restarted.admit(alert, moment + timedelta(seconds=600))
    assert not await gates[0].admit(alert, moment + timedelta(seconds=601))

    other = Alert(rule="job_unknown", severity="warning", message="m", key="my-org/my-repo#43")
    assert await gates[0].admit(other, moment)
    entry = await bucket.get(gate_key(alert))
    assert entry.value == to_iso(moment + timedelta(seconds=600)).encode()


async def test_two_services_send_once(runtime: Runtime, jobs: Any, received: Any, until: Any) -> None:
    clock = Clock()
    settings = AlertSettings(unknown_minutes=10, interval=3600, disabled_rules="projector_lag")
    first = AlertService(runtime=runtime, settings=settings, clock=clock)
    second = AlertService(runtime=runtime, settings=settings, clock=clock)
    orphan = await jobs.job(clock.moment - timedelta(minutes=20), turns=3)
    try:
        sent = await asyncio.gather(first.scan(), second.scan())
        assert sorted(sent) == [0, 1]
        await until(lambda: _count(received, 1))

        # The second service restarts: a fresh instance reads that the alert was sent.
        await second.close()
        second = AlertService(runtime=runtime, settings=settings, clock=clock)
        assert await second.scan() == 0
        await asyncio.sleep(0.3)
        assert rules_of(received) == ["job_unknown"]
        assert received[0]["jobId"] == orphan
    finally:
        await first.close()
        await second.close()


async def test_window_rules_span_processes(runtime: Runtime, jobs: Any, received: Any, until: Any) -> None:
    clock = Clock()
    settings = AlertSettings(failure_min_jobs=6, failure_rate=0.5, unresumed_failures=100, interval=3600)
    services = [AlertService(runtime=runtime, settings=settings, clock=clock) for _ in range(2)]
    tasks = [asyncio.create_task(service.run()) for service in services]
    try:
        await until(lambda: _consumer_ready(runtime))
        failed = []
        for _ in range(6):
            job_id = await jobs.job(clock.moment)
            await jobs.fail(job_id, clock.moment, kind="overloaded")
            failed.append(job_id)

        # The shared durable splits the failures between the two processes, yet each counts all six.
        await until(lambda: _count(received, 7))
        await asyncio.sleep(0.5)
        assert rules_of(received) == sorted(["failure_rate", *["job_failed"] * 6])
        rate = next(alert for alert in received if alert["rule"] == "failure_rate")
        assert rate["details"]["failed"] == 6
        assert sorted(alert["jobId"] for alert in received if alert["rule"] == "job_failed") == sorted(failed)
    finally:
        for service in services:
            service.stop()
        await asyncio.gather(*tasks)
        for service in services:
            await service.close()


def test_settings_read_toml_file(tmp_path: Any, monkeypatch: Any) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('dedup_seconds = "5m"\nfailure_rate = 0.25\ndisabled_rules = "near_max_turns"\n')
    monkeypatch.setenv("TURNLOG_ALERTS_FILE", str(path))
    monkeypatch.setenv("TURNLOG_ALERT_FAILURE_RATE", "0.75")
    settings = AlertSettings()
    assert settings.dedup_seconds == 300
    assert settings.failure_rate == 0.75
    assert not settings.enabled("near_max_turns")
    assert settings.enabled("job_failed")


async def _publish_dead_letter(runtime: Runtime, job_id: str) -> None:
    """Publish the raw signal the projector sends for an undecodable event of `job_id`."""
    await runtime.nc.publish(
        topology.DEAD_LETTER_SUBJECT,
        b"{broken",
        headers={"Turnlog-Subject": f"turnlog.events.{job_id}.turn", "Turnlog-Sequence": "7", "Turnlog-Error": "bad"},
    )


async def _consumer_ready(runtime: Runtime) -> bool:
    try:
        await runtime.js.consumer_info(topology.EVENTS_STREAM, "alerts")
    except Exception:
        return False
    return True


async def _count(received: list[dict[str, Any]], count: int) -> bool:
    return len(rules_of(received)) >= count


async def _rules_are(received: list[dict[str, Any]], expected: list[str]) -> bool:
    return rules_of(received) == expected
