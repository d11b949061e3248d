"""Replay, rebuild, metrics, the event stream and the `unknown` status, against live processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.cli.monitor import parse_sse
from services.common.embedded import free_port

TURNLOG = str(Path(sys.executable).parent / "turnlog")


def test_replay_rebuild_metrics_and_stream(make_stack: Callable[..., Any], nats_server: Any) -> None:
    stack = make_stack(nats_server.url)
    stack.start()
    job_id = stack.post("/jobs", json={"repository": "my-org/my-repo", "task": "Add error handling"}).json()["jobId"]
    stack.wait_for_status(job_id, {"completed"})

    at_three = json.loads(stack.cli("replay", job_id, "--to-turn", "3", "--json").stdout)
    assert at_three["toTurn"] == 3
    assert at_three["lastTurn"] == 8
    assert at_three["checkpoint"]["turns"] == 3
    assert at_three["checkpoint"]["jobStatus"] == "running"
    messages = at_three["conversation"]["messages"]
    assert len(messages) == 7
    assert [message["role"] for message in messages] == ["user"] + ["assistant", "user"] * 3
    assert at_three["files"] == []
    assert at_three["diff"] == ""

    at_five = json.loads(stack.cli("replay", job_id, "--to-turn", "5", "--json").stdout)
    assert [item["path"] for item in at_five["files"]] == ["api/errors.py"]
    assert "+++ b/api/errors.py" in at_five["diff"]
    assert "+from .errors import handle_errors" not in at_five["diff"]
    full = stack.get(f"/jobs/{job_id}/diff").text
    assert "+from .errors import handle_errors" in full

    shown = stack.cli("replay", job_id, "--to-turn", "3")
    assert shown.returncode == 0
    assert f"🔁 Replay of job {job_id} after turn 3 (last recorded turn: 8)" in shown.stdout
    assert "The checkpoint below is the job as it stood after turn 3, not as it is now." in shown.stdout
    assert "--- Message 7 (user) ---" in shown.stdout
    assert "--- Message 8" not in shown.stdout
    assert "no files changed" in shown.stdout
    past = stack.cli("replay", job_id, "--to-turn", "9")
    assert past.returncode == 1
    assert "toTurn 9 is past the last completed turn" in past.stderr

    before = stack.get(f"/checkpoints/{job_id}").json()
    rebuilt = stack.cli("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "🔄 Rebuilt 1 checkpoint(s) from" in rebuilt.stdout
    assert stack.get(f"/checkpoints/{job_id}").json() == before

    metrics_response = stack.get("/metrics")
    assert metrics_response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    metrics = metrics_response.text
    assert "turnlog_projection_lag" in metrics
    assert 'turnlog_jobs{status="completed"} 1' in metrics

    with httpx.stream("GET", f"{stack.url}/jobs/{job_id}/events/stream", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        received = []
        for event_id, kind, data in parse_sse(response.iter_lines()):
            received.append((int(event_id or 0), kind, json.loads(data)))
            if kind == "job.completed.v1":
                break
    sequences = [item[0] for item in received]
    assert sequences == sorted(sequences)
    assert [item[1] for item in received][:2] == ["job.requested.v1", "job.started.v1"]
    assert len(received) == 11

    third = sequences[2]
    headers = {"Last-Event-ID": str(third)}
    with httpx.stream("GET", f"{stack.url}/jobs/{job_id}/events/stream", headers=headers, timeout=10) as response:
        first = next(parse_sse(response.iter_lines()))
    assert int(first[0] or 0) == sequences[3]


def test_orphaned_job_shows_unknown_and_resumes(
    make_stack: Callable[..., Any], nats_server: Any, tmp_path: Path
) -> None:
    stack = make_stack(nats_server.url, TURNLOG_SIM_LATENCY_MS="400", TURNLOG_LEASE_SECONDS="2")
    port = free_port()
    env = {
        **stack.env,
        "TURNLOG_NATS_URL": nats_server.url,
        "TURNLOG_DATA_DIR": str(tmp_path / "data"),
        "TURNLOG_API_URL": f"http://127.0.0.1:{port}",
    }
    stack.env, stack.port = env, port

    def serve(service: str, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [TURNLOG, "serve", service, *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    processes = [serve("api", "--port", str(port)), serve("projector")]
    runner = serve("runner")
    processes.append(runner)
    try:
        _wait(lambda: _status_code(stack, "/ready") == 200, 30, "the API")
        job_id = stack.post("/jobs", json={"repository": "my-org/my-repo", "task": "Add error handling"}).json()[
            "jobId"
        ]
        _wait(lambda: stack.get(f"/jobs/{job_id}").json()["turns"] >= 2, 60, "two turns")

        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        killed = time.monotonic()
        orphaned = stack.wait_for_status(job_id, {"unknown"}, timeout=20)
        assert time.monotonic() - killed <= 2 + 5
        assert orphaned["canResume"] is True
        listed = stack.get("/checkpoints", params={"status": "unknown"}).json()["checkpoints"]
        assert [item["jobId"] for item in listed] == [job_id]
        assert stack.get(f"/checkpoints/{job_id}/can-resume").json()["canResume"] is True

        resumed = stack.post(f"/checkpoints/{job_id}/resume")
        assert resumed.status_code == 202, resumed.text
        new_id = resumed.json()["newJobId"]
        turns_before = orphaned["turns"]

        processes.append(serve("runner"))
        done = stack.wait_for_status(new_id, {"completed"}, timeout=90)
        assert done["turns"] == 8
        # The orphaned job's own work item comes back to the new runner, which sees it was resumed.
        time.sleep(3)
        old_events = stack.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["events"]
        assert old_events[-1]["type"] == "job.resumed.v1"
        old_turns = [item["event"]["turn"] for item in old_events if item["type"] == "turn.completed.v1"]
        assert old_turns == list(range(1, turns_before + 1))
        assert stack.get(f"/jobs/{job_id}").json()["status"] == "resumed"
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(15)


def _status_code(stack: Any, path: str) -> int:
    try:
        return int(stack.get(path).status_code)
    except httpx.HTTPError:
        return 0


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
