"""Resume and fork: the conversation and the workspace rebuilt from events, and the request always valid."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from contracts.events import (
    JobFailed,
    JobRequested,
    JobResumed,
    JobStarted,
    ToolResult,
    TurnCompleted,
    Usage,
)
from services.common.clock import now_iso
from services.common.conversation import LOST_RESULT_TEXT, build_conversation
from services.common.history import load_lineage
from services.common.ids import new_job_id
from services.simulator.transcript import turn_number
from services.simulator.validation import validate_request
from tests.runner.conftest import TASK, Harness

MakeHarness = Callable[..., Awaitable[Harness]]


async def resume(harness: Harness, job_id: str, *, from_turn: int, note: str | None = None) -> str:
    """Resume as the API does: mark the job resumed and request the new job in one atomic batch."""
    events = await harness.runtime.store.read(job_id)
    original = events[0].event
    assert isinstance(original, JobRequested)
    new_id = new_job_id()
    at = now_iso()
    request = JobRequested(
        job_id=new_id,
        at=at,
        repository=original.repository,
        task=original.task,
        max_turns=original.max_turns,
        resume_of=job_id,
        from_turn=from_turn,
        note=note,
    )
    resumed = JobResumed(job_id=job_id, at=at, new_job_id=new_id, from_turn=from_turn)
    await harness.runtime.store.append_batch([(resumed, events[-1].sequence), (request, 0)])
    return new_id


def first_request(requests: list[dict[str, Any]], turn: int) -> dict[str, Any]:
    return next(body for body in requests if turn_number(body["messages"]) == turn)


async def test_resume_after_failure_sends_history(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="429@6")
    job_id = await harness.create_job()
    assert await harness.run(job_id) == "failed"
    original_turns = [event for event in await harness.events(job_id) if isinstance(event, TurnCompleted)]
    assert len(original_turns) == 5

    new_id = await resume(harness, job_id, from_turn=5)
    assert await harness.run(new_id) == "completed"

    resumed_turns = [event.turn for event in await harness.events(new_id) if isinstance(event, TurnCompleted)]
    assert resumed_turns == [6, 7, 8]
    requests = [body for body in await harness.sim_requests() if turn_number(body["messages"]) >= 6]
    turn_six = requests[-3]
    assert turn_number(turn_six["messages"]) == 6
    assert turn_six["messages"][0]["content"][0]["text"] == TASK
    sent = [message["content"] for message in turn_six["messages"] if message["role"] == "assistant"]
    stored = [msgspec.json.decode(turn.assistant_content) for turn in original_turns]
    assert sent == stored
    results = [message["content"] for message in turn_six["messages"][2::2]]
    assert [[block["tool_use_id"] for block in content] for content in results] == [
        [result.tool_use_id for result in turn.tool_results] for turn in original_turns
    ]

    # The resumed job never wrote api/errors.py: it exists in its workspace only through the replay of turn 5.
    (workspace,) = (harness.settings.resolved_workspaces_dir() / new_id).iterdir()
    written = next(change for change in original_turns[4].changes if change.path == "api/errors.py")
    assert (workspace / "api/errors.py").read_text() == written.content
    assert "from .errors import handle_errors" in (workspace / "api/app.py").read_text()


async def test_fork_with_note_keeps_original(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="429@6")
    job_id = await harness.create_job()
    assert await harness.run(job_id) == "failed"
    before = await harness.events(job_id)

    note = "Prefer raising ApiError over returning tuples."
    fork_id = await resume(harness, job_id, from_turn=3, note=note)
    assert await harness.run(fork_id) == "completed"

    after = await harness.events(job_id)
    assert after[:-1] == before
    assert isinstance(after[-1], JobResumed)
    assert after[-1].from_turn == 3

    fork_events = await harness.events(fork_id)
    assert [event.turn for event in fork_events if isinstance(event, TurnCompleted)] == [4, 5, 6, 7, 8]
    started = next(event for event in fork_events if isinstance(event, JobStarted))
    original_start = next(event for event in before if isinstance(event, JobStarted))
    assert started.base_commit == original_start.base_commit

    turn_four = [body for body in await harness.sim_requests() if turn_number(body["messages"]) == 4][-1]
    messages = turn_four["messages"]
    assert len(messages) == 7
    stored = [msgspec.json.decode(event.assistant_content) for event in before if isinstance(event, TurnCompleted)]
    assert [message["content"] for message in messages[1::2]] == stored[:3]
    last = messages[-1]["content"]
    assert [block["type"] for block in last] == ["tool_result", "text"]
    assert last[-1]["text"] == note

    # Turns 1-3 only read files, so the fork starts from the base commit; it writes the module itself.
    fork_turns = [event for event in fork_events if isinstance(event, TurnCompleted)]
    assert [change.path for change in fork_turns[1].changes] == ["api/errors.py"]


async def test_resume_counts_turns_across_chain(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="429@6")
    job_id = await harness.create_job(max_turns=6)
    assert await harness.run(job_id) == "failed"

    new_id = await resume(harness, job_id, from_turn=5)
    assert await harness.run(new_id) == "failed"

    events = await harness.events(new_id)
    assert [event.turn for event in events if isinstance(event, TurnCompleted)] == [6]
    failed = events[-1]
    assert isinstance(failed, JobFailed)
    assert failed.kind == "max_turns"
    assert failed.turns == 6


def _turn(job_id: str, turn: int, content: list[dict[str, Any]], results: list[ToolResult], stop: str) -> TurnCompleted:
    return TurnCompleted(
        job_id=job_id,
        at=now_iso(),
        turn=turn,
        assistant_content=msgspec.Raw(msgspec.json.encode(content)),
        tool_results=results,
        stop_reason=stop,
        model="claude-sonnet-4-5",
        usage=Usage(),
        model_ms=1.0,
        tools_ms=1.0,
    )


def damaged_turns(job_id: str) -> list[TurnCompleted]:
    """Turns a crash or an older runner could leave: a lost result, blank text, trailing spaces, a cut call."""
    listing = {"type": "tool_use", "id": "toolu_lost", "name": "list_files", "input": {"path": "."}}
    thinking = {"type": "thinking", "thinking": "Look at the files.", "signature": "sig-1"}
    reading = {"type": "tool_use", "id": "toolu_read", "name": "read_file", "input": {"path": "api/app.py"}}
    cut = {"type": "tool_use", "id": "toolu_cut", "name": "write_file", "input": {}}
    return [
        _turn(job_id, 1, [thinking, {"type": "text", "text": ""}, listing], [], "tool_use"),
        _turn(
            job_id,
            2,
            [{"type": "text", "text": "  \n"}, reading],
            [ToolResult(tool_use_id="toolu_read", content="     1\timport json\n")],
            "tool_use",
        ),
        _turn(job_id, 3, [{"type": "text", "text": "Now I'll write it.   "}, cut], [], "max_tokens"),
    ]


def test_damaged_history_repaired_valid() -> None:
    conversation = build_conversation(TASK, damaged_turns("job1"), {3: "Continue carefully."})

    validate_request({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": conversation.messages})
    kinds = [(repair.turn, repair.kind) for repair in conversation.repairs]
    assert kinds == [
        (1, "empty_text_dropped"),
        (1, "lost_tool_result"),
        (2, "empty_text_dropped"),
        (3, "truncated_tool_use_dropped"),
        (3, "trailing_whitespace"),
    ]
    messages = conversation.messages
    assert messages[1]["content"][0] == {"type": "thinking", "thinking": "Look at the files.", "signature": "sig-1"}
    lost = messages[2]["content"][0]
    assert lost == {"type": "tool_result", "tool_use_id": "toolu_lost", "content": LOST_RESULT_TEXT, "is_error": True}
    assert messages[5] == {"role": "assistant", "content": [{"type": "text", "text": "Now I'll write it."}]}
    assert messages[6] == {"role": "user", "content": [{"type": "text", "text": "Continue carefully."}]}


async def test_damaged_history_resumes(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    store = harness.runtime.store
    job_id = new_job_id()
    repository = harness.settings.resolved_repos_dir() / "my-org/my-repo"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True, check=True)
    history = [
        JobRequested(job_id=job_id, at=now_iso(), repository="my-org/my-repo", task=TASK, max_turns=10),
        JobStarted(job_id=job_id, at=now_iso(), runner_id="gone", base_commit=head.stdout.strip()),
        *damaged_turns(job_id),
        JobFailed(job_id=job_id, at=now_iso(), kind="internal_error", message="runner lost", retryable=True, turns=3),
    ]
    last = 0
    for event in history:
        last = await store.append(event, expected_last=last)

    new_id = await resume(harness, job_id, from_turn=3)
    assert await harness.run(new_id) == "completed"

    first = (await harness.sim_requests())[0]
    assert turn_number(first["messages"]) == 4
    validate_request(first)
    lineage = await load_lineage(store, new_id)
    repaired = {repair.kind for repair in lineage.conversation().repairs}
    assert {"lost_tool_result", "empty_text_dropped", "truncated_tool_use_dropped"} <= repaired
