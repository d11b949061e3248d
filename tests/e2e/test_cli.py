"""The turnlog CLI against a live stack: outputs, --json documents, exit codes and monitor reconnects."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.embedded import free_port

TURNLOG = str(Path(sys.executable).parent / "turnlog")


def test_commands_print_fields_and_json(make_stack: Callable[..., Any], nats_server: Any) -> None:
    stack = make_stack(nats_server.url, TURNLOG_SIM_FAULTS="429@4")
    stack.start()
    job_id = stack.post("/jobs", json={"repository": "my-org/my-repo", "task": "Add error handling"}).json()["jobId"]
    stack.wait_for_status(job_id, {"failed"})

    listed = stack.cli("checkpoints")
    assert listed.returncode == 0
    assert "Found 1 checkpoint(s):" in listed.stdout
    for header in ("JOB ID", "STATUS", "TURNS", "MESSAGES", "LAST UPDATED", "CAN RESUME"):
        assert header in listed.stdout
    assert job_id in listed.stdout
    assert "3/10" in listed.stdout
    assert "\x1b[" not in listed.stdout

    as_json = json.loads(stack.cli("checkpoints", "--json").stdout)
    assert as_json == stack.get("/checkpoints").json()
    filtered = json.loads(stack.cli("checkpoints", "--status", "completed", "--json").stdout)
    assert filtered == {"checkpoints": []}

    inspect_json = json.loads(stack.cli("inspect", job_id, "--json").stdout)
    assert inspect_json == stack.get(f"/checkpoints/{job_id}").json()
    verbose = stack.cli("inspect", job_id, "--verbose")
    assert verbose.returncode == 0
    assert "📜 Full Message History:" in verbose.stdout
    assert "--- Message 1 (user) ---" in verbose.stdout
    assert "--- Message 2 (assistant) ---" in verbose.stdout
    assert "[tool_use] list_files - ID: toolu_" in verbose.stdout
    assert "[tool_result] ID: toolu_" in verbose.stdout
    assert "  Input: {" in verbose.stdout

    events = stack.cli("events", job_id)
    assert events.returncode == 0
    lines = events.stdout.strip().splitlines()
    assert "job.requested.v1" in lines[0]
    assert "job.failed.v1" in lines[-1]
    events_json = json.loads(stack.cli("events", job_id, "--json").stdout)
    assert [item["type"] for item in events_json["events"]][-1] == "job.failed.v1"

    unknown = stack.cli("inspect", "zzzzzzzzzz")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: job zzzzzzzzzz not found; list jobs with GET /checkpoints"
    bad_usage = stack.cli("checkpoints", "--status", "sleeping")
    assert bad_usage.returncode == 2

    resumed = json.loads(stack.cli("resume", job_id, "--from-turn", "2", "--note", "Focus on api/", "--json").stdout)
    assert resumed["originalJobId"] == job_id
    assert resumed["resumingFromTurn"] == 2
    refused = stack.cli("resume", job_id)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: cannot resume: job {job_id} was already resumed as job ")
    forked = stack.cli("inspect", resumed["newJobId"], "--verbose")
    assert f"(history continues job {job_id} from turn 2)" in forked.stdout
    assert "[text] Focus on api/" in forked.stdout

    stack.wait_for_status(resumed["newJobId"], {"completed"})
    deleted = stack.cli("delete", resumed["newJobId"], "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"deleted": True}
    gone = stack.cli("inspect", resumed["newJobId"])
    assert gone.returncode == 1
    missing = stack.cli("delete", "zzzzzzzzzz")
    assert missing.returncode == 1
    assert "job zzzzzzzzzz not found" in missing.stderr


def test_monitor_reconnects_after_api_restart(make_stack: Callable[..., Any], nats_server: Any, tmp_path: Path) -> None:
    stack = make_stack(nats_server.url, TURNLOG_SIM_LATENCY_MS="700")
    env = {**stack.env, "TURNLOG_NATS_URL": nats_server.url, "TURNLOG_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    env["TURNLOG_API_URL"] = f"http://127.0.0.1:{port}"
    stack.env = env
    stack.port = port

    def serve(service: str, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [TURNLOG, "serve", service, *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    workers = [serve("runner"), serve("projector")]
    api = serve("api", "--port", str(port))
    monitor: subprocess.Popen[str] | None = None
    try:
        _wait_ready(stack)
        job_id = stack.post("/jobs", json={"repository": "my-org/my-repo", "task": "Add error handling"}).json()[
            "jobId"
        ]
        monitor = subprocess.Popen(
            [TURNLOG, "monitor", job_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while stack.get(f"/jobs/{job_id}").json()["turns"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        api.terminate()
        api.wait(15)
        time.sleep(1.5)
        api = serve("api", "--port", str(port))
        out, err = monitor.communicate(timeout=90)
        assert monitor.returncode == 0, out + err
        assert "✅ Job completed" in out
        turn_lines = [line for line in out.splitlines() if line.startswith("Turn: ") and "tools:" in line]
        assert [line.split()[1] for line in turn_lines] == [f"{number}/10" for number in range(1, 9)]
        assert "reconnecting" in err
    finally:
        for process in [*workers, api]:
            process.terminate()
        for process in [*workers, api]:
            process.wait(15)
        if monitor is not None and monitor.poll() is None:
            monitor.kill()


def _wait_ready(stack: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if stack.get("/ready").status_code == 200:
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, "the API did not become ready"
        time.sleep(0.1)


def test_sse_parser_skips_keepalives() -> None:
    from services.cli.monitor import parse_sse

    lines = iter([": keepalive", "data: ", "", "id: 7", "event: job.started.v1", 'data: {"sequence": 7}', ""])
    assert list(parse_sse(lines)) == [("7", "job.started.v1", '{"sequence": 7}')]


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("TURNLOG_", "ANTHROPIC_"))}
    return subprocess.run(
        [TURNLOG, *args], env={**base, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_bad_api_url_is_usage_error(tmp_path: Path) -> None:
    result = _run(["checkpoints"], tmp_path, TURNLOG_API_URL="localhost:3000")

    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid TURNLOG_API_URL 'localhost:3000': use http://host:port, such as http://localhost:3000\n"
    )


def test_bad_setting_stops_up_before_start(tmp_path: Path) -> None:
    result = _run(
        ["up", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")], tmp_path, TURNLOG_AUTO_RESUME="maybe"
    )

    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid TURNLOG_AUTO_RESUME 'maybe': ")
    assert "Traceback" not in result.stderr
    # Nothing was started: no embedded NATS store was created.
    assert not (tmp_path / "data" / "nats").exists()


def test_busy_port_stops_up_before_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(["up", "--port", str(port), "--data-dir", str(tmp_path / "data")], tmp_path)

    assert result.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port} (Address already in use)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "nats").exists()
