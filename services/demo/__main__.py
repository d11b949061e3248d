"""Play the demo scenario: a webhook starts a job, a rate limit fails it at turn 6, a resume completes it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from services.common.embedded import free_port
from services.demo.sample import create_sample_repository

SEED_WEBHOOK = {
    "action": "created",
    "installation": {"id": 12345},
    "repository": {"owner": {"login": "my-org"}, "name": "my-repo", "default_branch": "main"},
    "issue": {"number": 42},
    "comment": {"body": "/code Add comprehensive error handling to the API"},
}


def turnlog(*args: str, env: dict[str, str]) -> int:
    """Run a turnlog CLI command as a user would, echoing the command and its output."""
    print(f"\n$ turnlog {' '.join(args)}", flush=True)
    command = [str(Path(sys.executable).parent / "turnlog"), *args]
    return subprocess.run(command, env=env, check=False).returncode


def expect(condition: bool, message: str) -> None:
    """Stop the demo with a clear message when a step did not do what the scenario needs."""
    if not condition:
        raise SystemExit(f"demo failed: {message}")


def main() -> int:
    """Run the scenario and return the process exit code."""
    workdir = Path(tempfile.mkdtemp(prefix="turnlog-demo-"))
    port = free_port()
    env = {
        **os.environ,
        "TURNLOG_API_URL": f"http://127.0.0.1:{port}",
        "TURNLOG_REPOS_DIR": str(workdir / "repos"),
        "TURNLOG_SIM_FAULTS": "429@6",
        "TURNLOG_LOG_LEVEL": "ERROR",
    }
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("TURNLOG_NATS_URL", None)
    create_sample_repository(workdir / "repos")
    print("== turnlog demo: a job fails on a rate limit, then is resumed ==")
    print(f"Sample repository my-org/my-repo created under {workdir / 'repos'}")
    print(f"\n$ turnlog up --port {port} --data-dir {workdir / 'data'}", flush=True)
    stack = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "turnlog"),
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "data"),
        ],
        env=env,
    )
    try:
        return play(port, env)
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def play(port: int, env: dict[str, str]) -> int:
    """Drive the scenario through HTTP and the CLI against the running stack."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        expect(time.monotonic() < deadline, "the stack did not become ready within 30 s")
        time.sleep(0.2)

    print(
        f"\n$ curl -X POST {base}/webhook -H 'Content-Type: application/json' "
        "-H 'X-GitHub-Event: issue_comment' -d '<issue_comment payload>'"
    )
    response = httpx.post(
        f"{base}/webhook",
        content=json.dumps(SEED_WEBHOOK),
        headers={"Content-Type": "application/json", "X-GitHub-Event": "issue_comment"},
    )
    print(f"{response.status_code} {response.text}")
    expect(response.status_code == 202, f"the webhook answered {response.status_code}")
    job_id = response.json()["jobId"]

    expect(turnlog("monitor", job_id, env=env) == 1, "the first job should fail on the rate limit")
    turnlog("checkpoints", env=env)
    turnlog("inspect", job_id, env=env)

    resumed = subprocess.run(
        [str(Path(sys.executable).parent / "turnlog"), "resume", job_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"\n$ turnlog resume {job_id}")
    expect(resumed.returncode == 0, f"resume failed: {resumed.stderr.strip()}")
    document = json.loads(resumed.stdout)
    print("🎉 Job resumed successfully!")
    print(f"   Original Job ID: {document['originalJobId']}")
    print(f"   New Job ID: {document['newJobId']}")
    print(f"   Resuming from turn: {document['resumingFromTurn']}")
    new_id = document["newJobId"]

    expect(turnlog("monitor", new_id, env=env) == 0, "the resumed job should complete")
    turnlog("inspect", new_id, env=env)
    turnlog("diff", new_id, env=env)
    print("\n== demo finished: the job failed at turn 6, was resumed from turn 5 and completed ==")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
