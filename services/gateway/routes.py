"""The `POST /webhook` route: verify, decode, decide, append once."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from litestar import Request, Response, post

from contracts.events import GitHubSource, JobRequested
from services.api.errors import ApiError
from services.common.clock import now_iso
from services.common.history import load_job
from services.common.ids import derived_job_id, new_job_id
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.store import AppendConflictError
from services.gateway.payload import PayloadError, decide, decode_payload

__all__ = ["GATEWAY_ROUTES"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


@post("/webhook", status_code=202, summary="GitHub webhook")
async def webhook(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Turn an `issue_comment` that starts with `/code ` into a job request, exactly once per comment."""
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"delivery body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    _verify_signature(settings, raw, request.headers.get("x-hub-signature-256"))

    kind = request.headers.get("x-github-event", "")
    if kind == "ping":
        return Response({"ignored": "ping"}, status_code=200)
    if kind != "issue_comment":
        return Response({"ignored": f"event {kind or '(none)'} is not an issue_comment"}, status_code=200)
    content_type = request.headers.get("content-type", "application/json")
    if not content_type.startswith(("application/json", "application/x-www-form-urlencoded")):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {content_type!r} is not supported; send application/json or form-encoded payload=",
        )
    try:
        payload = decode_payload(raw, content_type)
    except PayloadError as exc:
        raise ApiError(400, "invalid_request", str(exc), field=exc.field) from exc

    decision = decide(payload)
    if decision.task is None:
        return Response({"ignored": decision.ignored}, status_code=200)

    delivery = request.headers.get("x-github-delivery")
    if payload.comment.id is not None:
        job_id = derived_job_id("comment", str(payload.comment.id))
    elif delivery:
        job_id = derived_job_id("delivery", delivery)
    else:
        job_id = new_job_id()
    repository = f"{payload.repository.owner.login}/{payload.repository.name}"
    event = JobRequested(
        job_id=job_id,
        at=now_iso(),
        repository=repository,
        task=decision.task,
        max_turns=settings.default_max_turns,
        github=GitHubSource(
            installation_id=payload.installation.id if payload.installation else None,
            issue_number=payload.issue.number,
            delivery_id=delivery,
            comment_id=payload.comment.id,
            is_pull_request=payload.issue.pull_request is not None,
            sender=payload.sender.login if payload.sender else None,
        ),
    )
    try:
        await runtime.store.append(event, expected_last=0)
    except AppendConflictError:
        # The same comment or delivery arrived before: answer with the job it created.
        history = await load_job(runtime.store, job_id)
        status = history.checkpoint.job_status if history and history.checkpoint else "deleted"
        return Response({"jobId": job_id, "status": status, "duplicate": True}, status_code=200)
    log.info("job %s requested for %s#%d", job_id, repository, payload.issue.number)
    return Response({"jobId": job_id, "status": "queued"}, status_code=202)


def _verify_signature(settings: Settings, raw: bytes, header: str | None) -> None:
    if settings.webhook_secret is None:
        return
    secret = settings.webhook_secret.get_secret_value().encode()
    expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    if not header or not hmac.compare_digest(header.encode(), expected.encode()):
        raise ApiError(401, "bad_signature", "missing or invalid X-Hub-Signature-256; check the webhook secret")


GATEWAY_ROUTES = [webhook]
