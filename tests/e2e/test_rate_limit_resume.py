"""The seed scenario end to end: a webhook job fails on a rate limit at turn 6 and a resume completes it."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

SEED_WEBHOOK = {
    "action": "created",
    "installation": {"id": 12345},
    "repository": {"owner": {"login": "my-org"}, "name": "my-repo", "default_branch": "main"},
    "issue": {"number": 42},
    "comment": {"body": "/code Add comprehensive error handling to the API"},
}
HEADERS = {"Content-Type": "application/json", "X-GitHub-Event": "issue_comment"}


def event_types(stack: Any, job_id: str) -> list[str]:
    page = stack.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()
    return [item["type"] for item in page["events"]]


def test_webhook_rate_limit_resume_complete(make_stack: Callable[..., Any], nats_server: Any) -> None:
    stack = make_stack(nats_server.url, TURNLOG_SIM_FAULTS="429@6")
    stack.start()

    accepted = stack.post("/webhook", content=json.dumps(SEED_WEBHOOK), headers=HEADERS)
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "queued"
    job_id = accepted.json()["jobId"]

    monitor = stack.cli("monitor", job_id)
    assert monitor.returncode == 1, monitor.stdout + monitor.stderr
    assert "Turn: 5/10" in monitor.stdout
    assert "❌ Job failed" in monitor.stdout

    failed = stack.wait_for_status(job_id, {"failed"})
    assert failed["turns"] == 5
    assert failed["maxTurns"] == 10
    assert failed["failure"]["kind"] == "rate_limited"
    assert failed["failure"]["retryable"] is True
    retry_at = datetime.fromisoformat(failed["failure"]["retryNotBefore"].replace("Z", "+00:00"))
    assert abs(retry_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=2)
    assert event_types(stack, job_id) == [
        "job.requested.v1",
        "job.started.v1",
        *["turn.completed.v1"] * 5,
        "job.failed.v1",
    ]

    inspect = stack.cli("inspect", job_id)
    assert inspect.returncode == 0
    assert "📋 Checkpoint Information:" in inspect.stdout
    assert f"Job ID: {job_id}" in inspect.stdout
    assert "Status: failed" in inspect.stdout
    assert "Turns: 5/10 (50%)" in inspect.stdout
    assert "Can Resume: ✅ Yes" in inspect.stdout

    can = stack.get(f"/checkpoints/{job_id}/can-resume").json()
    assert can["canResume"] is True

    httpx.delete(f"{stack.simulator_url()}/_sim/requests", timeout=5)

    resumed = stack.cli("resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "🎉 Job resumed successfully!" in resumed.stdout
    assert f"Original Job ID: {job_id}" in resumed.stdout
    assert "Resuming from turn: 5" in resumed.stdout
    new_id = resumed.stdout.split("New Job ID: ")[1].split()[0]
    assert new_id != job_id

    follow = stack.cli("monitor", new_id)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "Turn: 6/10" in follow.stdout
    assert "✅ Job completed" in follow.stdout

    done = stack.wait_for_status(new_id, {"completed"})
    assert done["turns"] == 8
    assert done["resumeOf"] == job_id
    assert done["fromTurn"] == 5
    original = stack.wait_for_status(job_id, {"resumed"})
    assert original["resumedAs"] == new_id
    assert event_types(stack, job_id)[-1] == "job.resumed.v1"
    assert event_types(stack, new_id) == [
        "job.requested.v1",
        "job.started.v1",
        *["turn.completed.v1"] * 3,
        "job.completed.v1",
    ]

    # The first request of the resumed job carries the original's whole history: 5 turns.
    requests = httpx.get(f"{stack.simulator_url()}/_sim/requests", timeout=5).json()
    first = requests[0]
    assistant_turns = [message for message in first["messages"] if message["role"] == "assistant"]
    assert len(assistant_turns) == 5
    assert first["messages"][0]["content"][0]["text"] == "Add comprehensive error handling to the API"

    diff = stack.cli("diff", new_id)
    assert diff.returncode == 0
    assert "+++ b/api/errors.py" in diff.stdout
    assert "+from .errors import handle_errors" in diff.stdout

    listed = stack.cli("checkpoints", "--json")
    statuses = {item["jobId"]: item["jobStatus"] for item in json.loads(listed.stdout)["checkpoints"]}
    assert statuses == {job_id: "resumed", new_id: "completed"}


def test_up_restart_keeps_jobs(make_stack: Callable[..., Any]) -> None:
    stack = make_stack()
    stack.start()
    accepted = stack.post("/webhook", content=json.dumps(SEED_WEBHOOK), headers=HEADERS)
    job_id = accepted.json()["jobId"]
    stack.wait_for_status(job_id, {"completed"})

    seconds = stack.stop(signal.SIGINT)
    assert seconds < 10
    assert stack.process.returncode == 0

    stack.start()
    listed = stack.cli("checkpoints", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = {item["jobId"]: item for item in json.loads(listed.stdout)["checkpoints"]}
    assert jobs[job_id]["jobStatus"] == "completed"
    assert jobs[job_id]["turns"] == 8


def test_cli_reports_unreachable_api(make_stack: Callable[..., Any]) -> None:
    stack = make_stack()
    result = stack.cli("checkpoints")
    assert result.returncode == 3
    assert result.stderr.strip() == (f"error: cannot reach the API at {stack.url}: is `turnlog up` running?")


def test_cancel_running_job_after_turn(make_stack: Callable[..., Any], nats_server: Any) -> None:
    stack = make_stack(nats_server.url, TURNLOG_SIM_LATENCY_MS="300")
    stack.start()

    invalid = stack.post("/jobs", json={"repository": "my-org/my-repo", "task": "x", "maxTurns": "ten"})
    assert invalid.status_code == 400
    assert invalid.json()["field"] == "maxTurns"
    for bad in (0, 1001):
        out_of_range = stack.post("/jobs", json={"repository": "my-org/my-repo", "task": "x", "maxTurns": bad})
        assert out_of_range.status_code == 400, bad
        assert out_of_range.json()["message"] == f"maxTurns {bad} is out of range; use 1 to 1000"

    created = stack.post("/jobs", json={"repository": "my-org/my-repo", "task": "Add error handling", "maxTurns": 10})
    assert created.status_code == 202
    job_id = created.json()["jobId"]
    stack.wait_for_status(job_id, {"running"})

    cancelled = stack.cli("cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "will stop after its current turn" in cancelled.stdout

    final = stack.wait_for_status(job_id, {"cancelled"})
    assert 1 <= final["turns"] < 8
    types = event_types(stack, job_id)
    assert types[-1] == "job.cancelled.v1"
    assert "job.cancel_requested.v1" in types
    turns = [
        item["event"]["turn"]
        for item in stack.get(f"/jobs/{job_id}/events").json()["events"]
        if item["type"] == "turn.completed.v1"
    ]
    assert turns == list(range(1, final["turns"] + 1))

    again = stack.cli("cancel", job_id)
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: cannot cancel: job {job_id} is cancelled, only queued or running jobs stop"
