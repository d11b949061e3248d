"""Every event fits the server's max payload, however large the files the agent reads and writes."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

from contracts.codec import encode_event
from contracts.events import TurnCompleted
from services.runner.tools import Workspace
from tests.runner.conftest import Harness

MakeHarness = Callable[..., Awaitable[Harness]]


def create_big_repository(root: Path) -> None:
    """A repository whose main module is about 2 MB, with thousands of `def ` lines."""
    root.mkdir(parents=True)
    handlers = "".join(f"def get_item_{index}(request):\n    return {{'id': {index}}}\n\n" for index in range(42_000))
    (root / "app.py").write_text(handlers)
    (root / "store.py").write_text("def load(key):\n    return {}[key]\n")
    git = ["git", "-c", "user.name=turnlog", "-c", "user.email=turnlog@example.com"]
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main"], cwd=root, check=True)
    subprocess.run([*git, "add", "."], cwd=root, check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "big"], cwd=root, check=True)


async def test_big_outputs_fit_payload(make_harness: MakeHarness) -> None:
    # A tool output cap far above the payload limit leaves shrinking the results to the runner.
    harness = await make_harness(tool_output_bytes=8 * 1024 * 1024)
    create_big_repository(harness.settings.resolved_repos_dir() / "big-org/big-repo")
    assert (harness.settings.resolved_repos_dir() / "big-org/big-repo/app.py").stat().st_size > 2_000_000
    job_id = await harness.create_job(repository="big-org/big-repo")

    assert await harness.run(job_id) == "completed"

    max_payload = int(harness.runtime.nc.max_payload)
    events = await harness.events(job_id)
    assert all(len(encode_event(event)) <= max_payload for event in events)
    results = [result for event in events if isinstance(event, TurnCompleted) for result in event.tool_results]
    search = results[1].content
    assert "[search found 42001 matching lines and showed the first 500;" in search
    read = results[2].content
    assert read.startswith("     1\tdef get_item_0(request):\n")
    assert "[output truncated to fit the event size limit: kept " in read


def test_change_room_rejects_write(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path, max_file_bytes=4096)
    workspace.limit_changes(1000)

    first = workspace.run_tool("write_file", {"path": "a.txt", "content": "a" * 600})
    second = workspace.run_tool("write_file", {"path": "b.txt", "content": "b" * 600})
    rewrite = workspace.run_tool("write_file", {"path": "a.txt", "content": "a" * 900})

    assert first.is_error is False
    assert second.is_error is True
    assert second.content == (
        "the new content of 'b.txt' takes 629 bytes, but this turn has room for only 371 more bytes of "
        "file changes; write it in smaller pieces over several turns"
    )
    assert not (tmp_path / "b.txt").exists()
    assert rewrite.is_error is False
    assert [change.path for change in workspace.take_changes()] == ["a.txt"]
