"""The agent loop against the simulator: transient faults retried, hard ones failing the job honestly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import JobCompleted, JobFailed, TurnCompleted
from services.simulator.transcript import turn_number
from tests.runner.conftest import Harness

MakeHarness = Callable[..., Awaitable[Harness]]
COMPLETED_RUN = ["JobRequested", "JobStarted", *["TurnCompleted"] * 8, "JobCompleted"]


def requests_for_turn(requests: list[dict[str, Any]], turn: int) -> list[dict[str, Any]]:
    return [body for body in requests if turn_number(body["messages"]) == turn]


async def test_rate_limit_short_wait_retried(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="429:1@3")
    job_id = await harness.create_job()

    assert await harness.run(job_id) == "completed"

    assert await harness.types(job_id) == COMPLETED_RUN
    assert len(requests_for_turn(await harness.sim_requests(), 3)) == 2


async def test_rate_limit_hour_fails_retryable(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="429@3")
    job_id = await harness.create_job()

    assert await harness.run(job_id) == "failed"

    events = await harness.events(job_id)
    failed = events[-1]
    assert isinstance(failed, JobFailed)
    assert failed.kind == "rate_limited"
    assert failed.retryable is True
    assert failed.turns == 2
    assert failed.retry_not_before is not None
    retry_at = datetime.fromisoformat(failed.retry_not_before.replace("Z", "+00:00"))
    assert abs(retry_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=2)
    assert len(requests_for_turn(await harness.sim_requests(), 3)) == 1


async def test_overloaded_stream_retried(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="overloaded-stream@2")
    job_id = await harness.create_job()

    assert await harness.run(job_id) == "completed"

    assert await harness.types(job_id) == COMPLETED_RUN
    turn_two = requests_for_turn(await harness.sim_requests(), 2)
    assert len(turn_two) == 2
    assert all(body["stream"] is True for body in turn_two)


async def test_bad_request_fails_with_message(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="400@4")
    job_id = await harness.create_job()

    assert await harness.run(job_id) == "failed"

    failed = (await harness.events(job_id))[-1]
    assert isinstance(failed, JobFailed)
    assert failed.kind == "model_rejected"
    assert failed.retryable is False
    assert failed.retry_not_before is None
    assert failed.turns == 3
    assert failed.message == ("Invalid request (fault 400@4 injected by the turnlog simulator) (invalid_request_error)")


async def test_truncated_tool_call_retried_once(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="max_tokens@5")
    job_id = await harness.create_job()

    assert await harness.run(job_id) == "completed"

    events = await harness.events(job_id)
    turns = [event for event in events if isinstance(event, TurnCompleted)]
    assert [turn.turn for turn in turns] == list(range(1, 9))
    assert all(turn.stop_reason != "max_tokens" for turn in turns)
    turn_five = requests_for_turn(await harness.sim_requests(), 5)
    assert [body["max_tokens"] for body in turn_five] == [4096, 8192]


async def test_truncated_twice_fails_output_truncated(make_harness: MakeHarness) -> None:
    harness = await make_harness(faults="max_tokens@5,max_tokens@5")
    job_id = await harness.create_job()

    assert await harness.run(job_id) == "failed"

    failed = (await harness.events(job_id))[-1]
    assert isinstance(failed, JobFailed)
    assert failed.kind == "output_truncated"
    assert failed.retryable is False
    assert failed.turns == 4
    # The truncated write_file of turn 5 never ran, so no turn recorded a change.
    changes = [turn.changes for turn in await harness.events(job_id) if isinstance(turn, TurnCompleted)]
    assert changes == [[]] * 4


async def test_max_turns_fails_job(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    job_id = await harness.create_job(max_turns=3)

    assert await harness.run(job_id) == "failed"

    events = await harness.events(job_id)
    assert [event.turn for event in events if isinstance(event, TurnCompleted)] == [1, 2, 3]
    failed = events[-1]
    assert isinstance(failed, JobFailed)
    assert failed.kind == "max_turns"
    assert failed.retryable is False
    assert failed.turns == 3


async def test_clean_run_records_results(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    job_id = await harness.create_job()

    assert await harness.run(job_id) == "completed"

    events = await harness.events(job_id)
    assert isinstance(events[-1], JobCompleted)
    assert events[-1].turns == 8
    results = [result for event in events if isinstance(event, TurnCompleted) for result in event.tool_results]
    assert len(results) == 8
    assert not any(result.is_error for result in results)
