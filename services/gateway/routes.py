"""The `POST /webhook` route: verify, decode, decide, append once."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.openapi.datastructures import ResponseSpec

from contracts.events import GitHubSource, JobRequested
from services.api.errors import ApiError, ErrorBody
from services.common.clock import now_iso
from services.common.history import load_job
from services.common.ids import derived_job_id, new_job_id
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.store import AppendConflictError, EventStore, StoreError
from services.gateway.flood import FloodGuard
from services.gateway.payload import PayloadError, decide, decode_payload

__all__ = ["GATEWAY_ROUTES"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


class WebhookAnswer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The webhook response body: the job a command created or matched, or why the delivery was ignored."""

    jobId: str | None = None
    status: str | None = None
    duplicate: bool = False
    ignored: str | None = None


_ERRORS = {
    200: ResponseSpec(WebhookAnswer, description="Ignored event (`ignored`), or a redelivery of an existing job."),
    400: ResponseSpec(ErrorBody, description="Malformed JSON or a missing field; `field` names it."),
    401: ResponseSpec(ErrorBody, description="Missing or invalid X-Hub-Signature-256."),
    413: ResponseSpec(ErrorBody, description="Body larger than 1 MiB."),
    415: ResponseSpec(ErrorBody, description="Content type other than JSON or form-encoded."),
    429: ResponseSpec(ErrorBody, description="Too many jobs for one issue within the flood window."),
    503: ResponseSpec(ErrorBody, description="NATS did not respond in time; GitHub may redeliver safely."),
}


@post(
    "/webhook",
    status_code=202,
    summary="GitHub webhook",
    description=(
        "An `issue_comment` created with a body starting `/code ` creates a job (202). Redeliveries of the "
        "same comment or delivery return the original job (200). Other events answer 200 with `ignored`."
    ),
    responses=_ERRORS,
)
async def webhook(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Turn an `issue_comment` that starts with `/code ` into a job request, exactly once per comment."""
    settings: Settings = request.app.state.settings
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"delivery body is {declared} bytes; the limit is {MAX_BODY_BYTES}")
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
            field="Content-Type",
        )
    try:
        payload = decode_payload(raw, content_type)
    except PayloadError as exc:
        raise ApiError(400, "invalid_request", str(exc), field=exc.field) from exc

    decision = decide(payload)
    if decision.task is None:
        return Response({"ignored": decision.ignored}, status_code=200)
    repository = f"{payload.repository.owner.login}/{payload.repository.name}"
    allowed = settings.allowed_repositories()
    if allowed and repository.lower() not in allowed:
        return Response({"ignored": f"repository {repository} is not in TURNLOG_ALLOWED_REPOS"}, status_code=200)

    delivery = request.headers.get("x-github-delivery")
    if payload.comment.id is not None:
        job_id = derived_job_id("comment", str(payload.comment.id))
    elif delivery:
        job_id = derived_job_id("delivery", delivery)
    else:
        job_id = new_job_id()
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
    return await _append_once(request, event, repository, payload.issue.number)


async def _append_once(
    request: Request[Any, Any, Any], event: JobRequested, repository: str, issue: int
) -> Response[dict[str, Any]]:
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    store = EventStore(
        runtime.nc,
        runtime.js,
        publish_timeout=settings.webhook_publish_timeout,
        retry_window=settings.webhook_publish_timeout,
    )
    try:
        if await store.last_sequence(event.job_id) > 0:
            return await _duplicate(runtime, event.job_id)
        if not await _flood_guard(request).allow(repository, issue):
            raise ApiError(
                429,
                "flood",
                f"{repository}#{issue} started {settings.flood_max_jobs} jobs within "
                f"{settings.flood_window_seconds:.0f}s; wait before sending more /code comments",
            )
        await store.append(event, expected_last=0)
    except AppendConflictError:
        return await _duplicate(runtime, event.job_id)
    except (StoreError, TimeoutError) as exc:
        log.warning("job %s not recorded, NATS too slow: %s", event.job_id, exc)
        raise ApiError(503, "unavailable", "the event store did not respond in time; redeliver the webhook") from exc
    log.info("job %s requested for %s#%d", event.job_id, repository, issue)
    return Response({"jobId": event.job_id, "status": "queued"}, status_code=202)


async def _duplicate(runtime: Runtime, job_id: str) -> Response[dict[str, Any]]:
    history = await load_job(runtime.store, job_id)
    status = history.checkpoint.job_status if history and history.checkpoint else "deleted"
    return Response({"jobId": job_id, "status": status, "duplicate": True}, status_code=200)


def _flood_guard(request: Request[Any, Any, Any]) -> FloodGuard:
    guard: FloodGuard | None = getattr(request.app.state, "flood_guard", None)
    if guard is None:
        runtime: Runtime = request.app.state.runtime
        settings: Settings = request.app.state.settings
        guard = FloodGuard(
            runtime.flood, runtime.nc, limit=settings.flood_max_jobs, window=settings.flood_window_seconds
        )
        request.app.state.flood_guard = guard
    return guard


def _verify_signature(settings: Settings, raw: bytes, header: str | None) -> None:
    if settings.webhook_secret is None:
        return
    secret = settings.webhook_secret.get_secret_value().encode()
    expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    if not header or not hmac.compare_digest(header.encode(), expected.encode()):
        raise ApiError(401, "bad_signature", "missing or invalid X-Hub-Signature-256; check the webhook secret")


GATEWAY_ROUTES = [webhook]
