"""Round trips of every event and the errors for unknown or malformed payloads."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import topology
from contracts.codec import EventDecodeError, decode_event, encode_event, event_tag
from contracts.events import (
    AutoResumeDecided,
    CallbackDelivered,
    CallbackFailed,
    CheckpointDeleted,
    Event,
    FileChange,
    GitHubSource,
    JobCancelled,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRequested,
    JobResumed,
    JobStarted,
    ToolResult,
    TurnCompleted,
    Usage,
)

AT = "2026-01-15T10:30:45.000Z"

SAMPLES: list[Event] = [
    JobRequested(
        job_id="abc123",
        at=AT,
        repository="my-org/my-repo",
        task="Add error handling",
        max_turns=10,
        github=GitHubSource(installation_id=12345, issue_number=42),
    ),
    JobRequested(
        job_id="def456",
        at=AT,
        repository="my-org/my-repo",
        task="t",
        max_turns=10,
        resume_of="abc123",
        from_turn=5,
        note="focus on api/",
        callback_url="https://example.com/hook",
    ),
    JobStarted(job_id="abc123", at=AT, runner_id="host-1", base_commit="0" * 40, attempt=2),
    TurnCompleted(
        job_id="abc123",
        at=AT,
        turn=3,
        assistant_content=msgspec.Raw(
            b'[{"type":"text","text":"Hi \\u00e9"},{"type":"tool_use","id":"t1","name":"list_files","input":{}}]'
        ),
        tool_results=[ToolResult(tool_use_id="t1", content="a.py", is_error=False)],
        stop_reason="tool_use",
        model="claude",
        usage=Usage(input_tokens=10, output_tokens=5),
        model_ms=12.5,
        tools_ms=1.0,
        changes=[FileChange(path="a.py", content="x"), FileChange(path="b.py", content=None)],
    ),
    JobFailed(
        job_id="abc123",
        at=AT,
        kind="rate_limited",
        message="API rate limit exceeded",
        retryable=True,
        retry_not_before=AT,
        turns=5,
    ),
    JobCompleted(job_id="abc123", at=AT, summary="done", turns=8),
    JobCancelRequested(job_id="abc123", at=AT, reason="user"),
    JobCancelled(job_id="abc123", at=AT, turns=2),
    JobResumed(job_id="abc123", at=AT, new_job_id="def456", from_turn=5),
    CheckpointDeleted(job_id="abc123", at=AT, reason="api"),
    CallbackDelivered(job_id="abc123", at=AT, url="https://example.com/hook", delivery_id="d1", attempts=3, status=200),
    CallbackFailed(
        job_id="abc123", at=AT, url="https://example.com/hook", delivery_id="d1", attempts=1, last_error="404"
    ),
    AutoResumeDecided(
        job_id="abc123", at=AT, decision="resumed", reason="retryable", code="resumed", new_job_id="def456"
    ),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: event_tag(event))
def test_event_round_trip(event: Event) -> None:
    payload = encode_event(event)
    decoded = decode_event(payload)
    assert decoded == event
    assert encode_event(decoded) == payload


def test_every_tag_is_versioned_and_has_a_subject_kind() -> None:
    tags = {event_tag(event) for event in SAMPLES}
    assert tags == set(topology.EVENT_KINDS)
    for tag in tags:
        assert tag.rsplit(".", 1)[-1].startswith("v")


def test_wire_fields_are_camel_case() -> None:
    document = msgspec.json.decode(encode_event(SAMPLES[1]))
    assert document["type"] == "job.requested.v1"
    assert document["jobId"] == "def456"
    assert document["maxTurns"] == 10
    assert document["resumeOf"] == "abc123"
    assert document["fromTurn"] == 5


def test_assistant_content_bytes_are_kept_exactly() -> None:
    decoded = decode_event(encode_event(SAMPLES[3]))
    assert isinstance(decoded, TurnCompleted)
    assert bytes(decoded.assistant_content) == bytes(SAMPLES[3].assistant_content)  # type: ignore[union-attr]


def test_unknown_tag_is_rejected_with_sequence() -> None:
    payload = b'{"type":"job.requested.v9","jobId":"a","at":"x"}'
    with pytest.raises(EventDecodeError) as caught:
        decode_event(payload, sequence=17)
    assert caught.value.sequence == 17
    message = str(caught.value)
    assert message.startswith("cannot decode event at stream sequence 17: Invalid value 'job.requested.v9'")
    assert "Upgrade turnlog if the event comes from a newer version" in message


def test_malformed_json_is_rejected() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_event(b'{"type": ', sequence=3)
    assert "malformed JSON" in str(caught.value)


def test_missing_field_is_named() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_event(b'{"type":"job.completed.v1","jobId":"a","at":"x","turns":1}')
    assert "summary" in str(caught.value)


def test_event_subject_and_job_id() -> None:
    assert topology.event_subject("abc123", "turn.completed.v1") == "turnlog.events.abc123.turn"
    assert topology.job_id_from_subject("turnlog.events.abc123.turn") == "abc123"
    with pytest.raises(ValueError, match="not a turnlog event subject"):
        topology.job_id_from_subject("other.abc")


@given(
    task=st.text(min_size=1, max_size=200),
    max_turns=st.integers(min_value=1, max_value=1000),
    note=st.none() | st.text(max_size=50),
)
def test_job_requested_round_trip_any_text(task: str, max_turns: int, note: str | None) -> None:
    event = JobRequested(job_id="abc123", at=AT, repository="o/r", task=task, max_turns=max_turns, note=note)
    assert decode_event(encode_event(event)) == event


def test_nats_nanosecond_times_shortened_to_millis() -> None:
    from services.common.clock import to_millis

    assert to_millis("2026-12-04T21:44:44.92429252Z") == "2026-12-04T21:44:44.924Z"
    assert to_millis("2026-12-04T21:44:44.9+00:00") == "2026-12-04T21:44:44.900+00:00"
    assert to_millis("2026-12-04T21:44:44Z") == "2026-12-04T21:44:44Z"
