"""The pure webhook decision: which comments start a job, and the errors for unreadable deliveries."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from services.gateway.payload import BOT_MARKER, PayloadError, decide, decode_payload


def delivery(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "created",
        "installation": {"id": 12345},
        "repository": {"owner": {"login": "my-org"}, "name": "my-repo", "default_branch": "main"},
        "issue": {"number": 42},
        "comment": {"body": "/code Add comprehensive error handling to the API"},
    }
    body.update(changes)
    return body


def test_seed_payload_creates_job() -> None:
    event = decode_payload(json.dumps(delivery()).encode(), "application/json")
    decision = decide(event)
    assert decision.task == "Add comprehensive error handling to the API"
    assert decision.ignored is None


def test_multiline_task_is_kept() -> None:
    body = delivery(comment={"body": "/code Fix the bug\n\nin api/app.py"})
    assert decide(decode_payload(json.dumps(body).encode(), "application/json")).task == "Fix the bug\n\nin api/app.py"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"action": "edited"}, "comment edited, only new comments start jobs"),
        ({"action": "deleted"}, "comment deleted, only new comments start jobs"),
        ({"sender": {"login": "ci", "type": "Bot"}}, "comment written by a bot"),
        ({"comment": {"body": "/code x", "performed_via_github_app": {"id": 1}}}, "comment written by a GitHub App"),
        ({"comment": {"body": f"/code x {BOT_MARKER}"}}, "comment written by turnlog"),
        ({"comment": {"body": "looks good"}}, "comment is not a /code command"),
        ({"comment": {"body": "/code   "}}, "/code command without a task"),
    ],
)
def test_comments_that_create_nothing(changes: dict[str, Any], reason: str) -> None:
    decision = decide(decode_payload(json.dumps(delivery(**changes)).encode(), "application/json"))
    assert decision.task is None
    assert decision.ignored == reason


def test_form_encoded_delivery() -> None:
    raw = urlencode({"payload": json.dumps(delivery())}).encode()
    event = decode_payload(raw, "application/x-www-form-urlencoded")
    assert decide(event).task == "Add comprehensive error handling to the API"


def test_missing_field_is_named() -> None:
    body = delivery()
    del body["issue"]
    with pytest.raises(PayloadError) as caught:
        decode_payload(json.dumps(body).encode(), "application/json")
    assert caught.value.field is None or caught.value.field == "issue"
    assert "issue" in str(caught.value)


def test_wrong_type_is_named() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_payload(json.dumps(delivery(issue={"number": "x"})).encode(), "application/json")
    assert caught.value.field == "issue.number"


def test_malformed_json() -> None:
    with pytest.raises(PayloadError, match="not valid JSON"):
        decode_payload(b"{", "application/json")
