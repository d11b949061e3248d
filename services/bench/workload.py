"""Synthetic job histories of a chosen size, valid for the runner, the fold and the model simulator."""

from __future__ import annotations

import functools
import random
import subprocess
from pathlib import Path

import msgspec

from contracts.codec import encode_event
from contracts.events import JobFailed, JobRequested, JobStarted, ToolResult, TurnCompleted, Usage
from services.common.clock import now_iso
from services.common.store import EventStore
from services.demo.sample import create_sample_repository

__all__ = [
    "REPOSITORY",
    "TURN_BYTES",
    "failed_event",
    "head_commit",
    "prepare_repository",
    "request_event",
    "started_event",
    "turn_event",
    "write_job",
]

TURN_BYTES = 20 * 1024
"""Encoded size of one benchmark turn: a long file read is typical of a coding agent's turn."""

REPOSITORY = "my-org/my-repo"

_WORDS = ("def", "return", "self", "request", "handler", "error", "import", "event", "append", "stream", "await")


@functools.lru_cache(maxsize=256)
def _filler(size: int, seed: int) -> str:
    """Return `size` characters of code-like text that differs per seed, so no turn repeats another."""
    chooser = random.Random(seed)
    lines: list[str] = []
    length = 0
    number = 1
    while length < size:
        line = f"{number:5d}\t    " + " ".join(chooser.choice(_WORDS) for _ in range(9))
        lines.append(line)
        length += len(line) + 1
        number += 1
    return "\n".join(lines)[:size]


def turn_event(job_id: str, turn: int, *, size: int = TURN_BYTES) -> TurnCompleted:
    """Build turn `turn` of a job: a text block and a `read_file` call whose result pads the event to `size` bytes."""
    tool_use_id = f"toolu_bench_{turn:04d}"
    content = [
        {"type": "text", "text": f"Turn {turn}: I'll read the module to see how errors are handled."},
        {"type": "tool_use", "id": tool_use_id, "name": "read_file", "input": {"path": "api/app.py"}},
    ]

    def build(result: str) -> TurnCompleted:
        return TurnCompleted(
            job_id=job_id,
            at=now_iso(),
            turn=turn,
            assistant_content=msgspec.Raw(msgspec.json.encode(content)),
            tool_results=[ToolResult(tool_use_id=tool_use_id, content=result)],
            stop_reason="tool_use",
            model="claude-sonnet-4-5",
            usage=Usage(input_tokens=1200 * turn, output_tokens=180),
            model_ms=850.0,
            tools_ms=2.5,
        )

    overhead = len(encode_event(build("")))
    return build(_filler(max(size - overhead, 0), seed=turn))


def request_event(job_id: str, *, max_turns: int = 60) -> JobRequested:
    """Build the request that opens a benchmark job."""
    return JobRequested(
        job_id=job_id, at=now_iso(), repository=REPOSITORY, task="Add error handling to the API", max_turns=max_turns
    )


def started_event(job_id: str, base_commit: str) -> JobStarted:
    """Build the start of a benchmark job by a runner that no longer exists."""
    return JobStarted(job_id=job_id, at=now_iso(), runner_id="bench-seed", base_commit=base_commit)


def failed_event(job_id: str, turns: int) -> JobFailed:
    """Build a retryable rate-limit failure, so the job can be resumed."""
    return JobFailed(
        job_id=job_id,
        at=now_iso(),
        kind="rate_limited",
        message="rate limited by the model API (benchmark history)",
        retryable=True,
        turns=turns,
    )


async def write_job(
    store: EventStore, job_id: str, *, turns: int, base_commit: str, size: int = TURN_BYTES, failed: bool = True
) -> list[TurnCompleted]:
    """Append a whole job history with concurrency-checked appends; return its turn events."""
    sequence = await store.append(request_event(job_id), expected_last=0)
    sequence = await store.append(started_event(job_id, base_commit), expected_last=sequence)
    written: list[TurnCompleted] = []
    for number in range(1, turns + 1):
        event = turn_event(job_id, number, size=size)
        sequence = await store.append(event, expected_last=sequence)
        written.append(event)
    if failed:
        await store.append(failed_event(job_id, turns), expected_last=sequence)
    return written


def prepare_repository(repos_dir: Path) -> str:
    """Create the sample repository under `repos_dir` and return its HEAD commit."""
    create_sample_repository(repos_dir)
    return head_commit(repos_dir / REPOSITORY)


def head_commit(repository: Path) -> str:
    """Return the HEAD commit of a git repository."""
    output = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True, check=True, timeout=30
    )
    return output.stdout.strip()
