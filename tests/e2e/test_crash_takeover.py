"""kill -9 of a runner mid-job: another runner takes the job over after the lease and finishes it exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.embedded import free_port

TURNLOG = str(Path(sys.executable).parent / "turnlog")


def serve(service: str, env: dict[str, str], port: int | None = None) -> subprocess.Popen[bytes]:
    command = [TURNLOG, "serve", service] + (["--port", str(port)] if port else [])
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def test_killed_runner_job_taken_over(make_stack: Callable[..., Any], nats_server: Any, tmp_path: Path) -> None:
    stack = make_stack(nats_server.url, TURNLOG_SIM_LATENCY_MS="400", TURNLOG_LEASE_SECONDS="2")
    env = {**stack.env, "TURNLOG_NATS_URL": nats_server.url, "TURNLOG_DATA_DIR": str(tmp_path / "runner-data")}
    api_port = free_port()
    env["TURNLOG_API_URL"] = f"http://127.0.0.1:{api_port}"
    processes = [serve("api", env, api_port), serve("gateway", env, free_port()), serve("projector", env)]
    stack.port = api_port
    first_runner = serve("runner", env)
    processes.append(first_runner)
    try:
        wait_until(lambda: _ready(stack), 30, "the API")
        job_id = stack.post(
            "/jobs", json={"repository": "my-org/my-repo", "task": "Add error handling", "maxTurns": 10}
        ).json()["jobId"]
        wait_until(lambda: _turns(stack, job_id) >= 2, 60, "two turns")

        first_runner.send_signal(signal.SIGKILL)
        first_runner.wait(10)
        killed_at = time.monotonic()
        second_runner = serve("runner", env)
        processes.append(second_runner)

        done = stack.wait_for_status(job_id, {"completed"}, timeout=90)
        assert time.monotonic() - killed_at < 60
        assert done["turns"] == 8
        events = stack.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["events"]
        turns = [item["event"]["turn"] for item in events if item["type"] == "turn.completed.v1"]
        assert turns == list(range(1, 9))
        starts = [item["event"] for item in events if item["type"] == "job.started.v1"]
        assert [start["attempt"] for start in starts] == [1, 2]
        assert starts[0]["runnerId"] != starts[1]["runnerId"]
        assert events[-1]["type"] == "job.completed.v1"

        diff = stack.get(f"/jobs/{job_id}/diff").text
        assert "+++ b/api/errors.py" in diff
        assert "+from .errors import handle_errors" in diff
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def _ready(stack: Any) -> bool:
    try:
        return bool(stack.get("/ready").status_code == 200)
    except Exception:
        return False


def _turns(stack: Any, job_id: str) -> int:
    response = stack.get(f"/jobs/{job_id}")
    return int(response.json()["turns"]) if response.status_code == 200 else 0
