"""Webhook intake over HTTP: signatures, redeliveries and deliveries that must create nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

SECRET = "s3cret-for-tests"
PAYLOAD = {
    "action": "created",
    "installation": {"id": 12345},
    "repository": {"owner": {"login": "my-org"}, "name": "my-repo", "default_branch": "main"},
    "issue": {"number": 42},
    "comment": {"id": 991, "body": "/code Add comprehensive error handling to the API \u00e9 \\/ 1.5"},
}


def signed(raw: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


def test_webhook_signatures_and_redelivery(make_stack: Callable[..., Any], nats_server: Any) -> None:
    stack = make_stack(nats_server.url, TURNLOG_WEBHOOK_SECRET=SECRET)
    stack.start()
    raw = json.dumps(PAYLOAD, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d-1"}

    for bad in (None, "sha1=abc", signed(raw)[:-4], signed(raw + b" ")):
        extra = {} if bad is None else {"X-Hub-Signature-256": bad}
        response = stack.post("/webhook", content=raw, headers={**headers, **extra})
        assert response.status_code == 401, bad
        assert response.json()["error"] == "bad_signature"

    first = stack.post("/webhook", content=raw, headers={**headers, "X-Hub-Signature-256": signed(raw)})
    assert first.status_code == 202
    job_id = first.json()["jobId"]

    again = stack.post(
        "/webhook", content=raw, headers={**headers, "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": signed(raw)}
    )
    assert again.status_code == 200
    assert again.json()["jobId"] == job_id
    assert again.json()["duplicate"] is True

    # Without a comment id the delivery id decides; the job id derives from it, so a manual redelivery
    # hours later maps to the same job without relying on JetStream's duplicate window.
    no_comment = json.dumps({**PAYLOAD, "comment": {"body": "/code Add a health check"}}).encode()
    redelivered = {**headers, "X-GitHub-Delivery": "d-9", "X-Hub-Signature-256": signed(no_comment)}
    original = stack.post("/webhook", content=no_comment, headers=redelivered)
    assert original.status_code == 202
    repeat = stack.post("/webhook", content=no_comment, headers=redelivered)
    assert repeat.status_code == 200
    assert repeat.json()["jobId"] == original.json()["jobId"]
    second_job = original.json()["jobId"]

    ping = json.dumps({"zen": "hi"}).encode()
    pong = stack.post("/webhook", content=ping, headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": signed(ping)})
    assert pong.status_code == 200
    assert pong.json() == {"ignored": "ping"}

    edited = json.dumps({**PAYLOAD, "action": "edited", "comment": {"id": 992, "body": "/code x"}}).encode()
    response = stack.post("/webhook", content=edited, headers={**headers, "X-Hub-Signature-256": signed(edited)})
    assert response.status_code == 200
    assert response.json() == {"ignored": "comment edited, only new comments start jobs"}

    broken = b'{"action": "created"}'
    response = stack.post("/webhook", content=broken, headers={**headers, "X-Hub-Signature-256": signed(broken)})
    assert response.status_code == 400
    assert "repository" in response.json()["message"]

    listed = stack.get("/checkpoints").json()["checkpoints"]
    assert sorted(item["jobId"] for item in listed) == sorted([job_id, second_job])
