"""Route handlers of the REST API; each one validates, reads or appends, and responds."""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import Body, FromPath, Parameter

from contracts.checkpoint import JOB_STATUSES, Checkpoint
from contracts.codec import encode_event, event_tag
from contracts.events import JobCancelled, JobCancelRequested, JobRequested, JobResumed
from services.api.callbacks import check_callback_url
from services.api.errors import ERROR_RESPONSES, ApiError, check_job_id
from services.api.metrics import projection_lag
from services.api.schemas import (
    CanResumeOut,
    CheckpointList,
    CreateJobIn,
    JobAccepted,
    ResumeIn,
    ResumeOut,
)
from services.api.state import list_checkpoints, live_view, read_checkpoint
from services.common.clock import now_iso, to_millis
from services.common.deletion import DeletionConflictError, JobActiveError, JobNotFoundError, delete_job
from services.common.history import HistoryError, JobHistory, load_job, load_lineage
from services.common.ids import derived_job_id, new_job_id
from services.common.resume import commit_resume, plan_resume
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.store import AppendConflictError

__all__ = ["API_ROUTES"]


def _runtime(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _settings(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _check_repository(repository: str) -> None:
    if not _REPOSITORY.match(repository) or ".." in repository:
        raise ApiError(
            400, "invalid_request", f"invalid repository {repository!r}: expected owner/name", field="repository"
        )


async def _checkpoint_or_404(runtime: Runtime, job_id: str) -> Checkpoint:
    check_job_id(job_id)
    checkpoint = await read_checkpoint(runtime, job_id)
    if checkpoint is None:
        raise ApiError(404, "not_found", f"job {job_id} not found; list jobs with GET /checkpoints", field="jobId")
    return await live_view(runtime, checkpoint)


@get("/health", summary="Liveness", responses=ERROR_RESPONSES)
async def health() -> dict[str, str]:
    """Return 200 while the process serves requests."""
    return {"status": "ok"}


@get("/ready", summary="Readiness: NATS reachable and streams present", responses=ERROR_RESPONSES)
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Return 200 when NATS is connected and the events stream exists, 503 otherwise."""
    runtime = _runtime(request)
    try:
        info = await runtime.js.stream_info("TURNLOG_EVENTS")
    except Exception as exc:
        return Response({"ready": False, "reason": f"events stream unavailable: {exc!r}"}, status_code=503)
    lag = await projection_lag(runtime)
    connected = bool(runtime.nc.is_connected)
    return Response(
        {
            "ready": connected,
            "events": info.state.messages,
            "projectionLag": lag.events,
            "projectionGeneration": lag.generation,
        },
        status_code=200 if connected else 503,
    )


@post("/jobs", status_code=202, summary="Create a job without GitHub", responses=ERROR_RESPONSES)
async def create_job(
    request: Request[Any, Any, Any], data: Annotated[CreateJobIn, Body(description="The job to run.")]
) -> JobAccepted:
    """Append a job request from a JSON body."""
    runtime, settings = _runtime(request), _settings(request)
    body = data
    _check_repository(body.repository)
    if body.callback is not None:
        check_callback_url(body.callback.url, allow_private=settings.allow_private_callbacks)
    if not body.task.strip():
        raise ApiError(400, "invalid_request", "task is empty; say what the agent should do", field="task")
    max_turns = settings.default_max_turns if body.max_turns is None else body.max_turns
    if not 1 <= max_turns <= 1000:
        raise ApiError(400, "invalid_request", f"maxTurns {max_turns} is out of range; use 1 to 1000", field="maxTurns")
    job_id = new_job_id()
    event = JobRequested(
        job_id=job_id,
        at=now_iso(),
        repository=body.repository,
        task=body.task,
        max_turns=max_turns,
        callback_url=body.callback.url if body.callback else None,
    )
    await runtime.store.append(event, expected_last=0)
    return JobAccepted(job_id=job_id, status="queued")


@get("/jobs/{job_id:str}", summary="Job status", responses=ERROR_RESPONSES)
async def job_status(request: Request[Any, Any, Any], job_id: FromPath[str]) -> dict[str, Any]:
    """Return the job's status, turns and the rest of its checkpoint."""
    checkpoint = await _checkpoint_or_404(_runtime(request), job_id)
    body = msgspec.to_builtins(checkpoint)
    return {"jobId": checkpoint.job_id, "status": checkpoint.job_status, **body}


@get("/jobs/{job_id:str}/events", summary="The job's events in order", responses=ERROR_RESPONSES)
async def job_events(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    after: int = Parameter(default=0, ge=0, description="Return events after this stream sequence."),
    limit: int = Parameter(default=100, ge=1, le=1000, description="Maximum number of events to return."),
) -> dict[str, Any]:
    """Page through the job's raw events: sequence, time, type and the event itself."""
    check_job_id(job_id)
    store = _runtime(request).store
    stored = await store.read(job_id, after=after, limit=limit)
    if not stored and await store.last_sequence(job_id) == 0:
        raise ApiError(404, "not_found", f"job {job_id} not found; list jobs with GET /checkpoints", field="jobId")
    events = [
        {
            "sequence": item.sequence,
            "time": to_millis(item.time),
            "type": event_tag(item.event) if item.event is not None else None,
            "event": msgspec.json.decode(encode_event(item.event)) if item.event is not None else None,
            "error": str(item.error) if item.error is not None else None,
        }
        for item in stored
    ]
    return {"jobId": job_id, "events": events, "next": events[-1]["sequence"] if events else after}


@post("/jobs/{job_id:str}/cancel", status_code=202, summary="Cancel a queued or running job", responses=ERROR_RESPONSES)
async def cancel_job(request: Request[Any, Any, Any], job_id: FromPath[str]) -> dict[str, Any]:
    """Cancel a queued job at once; ask a running job's runner to stop after its current turn."""
    runtime = _runtime(request)
    view = await _checkpoint_or_404(runtime, job_id)
    if view.job_status not in ("queued", "running", "unknown"):
        raise ApiError(
            409,
            "not_active",
            f"cannot cancel: job {job_id} is {view.job_status}, only queued or running jobs stop",
            field="jobId",
        )
    last = await runtime.store.last_sequence(job_id)
    try:
        if view.job_status == "queued":
            await runtime.store.append(JobCancelled(job_id=job_id, at=now_iso(), turns=view.turns), expected_last=last)
            return {"jobId": job_id, "status": "cancelled"}
        await runtime.store.append(JobCancelRequested(job_id=job_id, at=now_iso(), reason="api"), expected_last=last)
    except AppendConflictError:
        # A runner started or appended meanwhile: the request still lands, checked against the new history.
        last = await runtime.store.last_sequence(job_id)
        await runtime.store.append(JobCancelRequested(job_id=job_id, at=now_iso(), reason="api"), expected_last=last)
    return {"jobId": job_id, "status": "cancelling"}


@get("/checkpoints", summary="List checkpoints", responses=ERROR_RESPONSES)
async def checkpoints(
    request: Request[Any, Any, Any],
    status: str | None = Parameter(default=None, description="Only checkpoints with this jobStatus."),
) -> CheckpointList:
    """List every checkpoint with its live status, optionally filtered by status."""
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(
            400,
            "invalid_request",
            f"invalid status {status!r}; use one of {', '.join(JOB_STATUSES)}",
            field="status",
        )
    runtime = _runtime(request)
    views = [await live_view(runtime, checkpoint) for checkpoint in await list_checkpoints(runtime)]
    if status is not None:
        views = [view for view in views if view.job_status == status]
    return CheckpointList(checkpoints=views)


@get("/checkpoints/{job_id:str}", summary="One checkpoint", responses=ERROR_RESPONSES)
async def checkpoint(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Checkpoint:
    """Return one checkpoint; 404 when the job does not exist."""
    return await _checkpoint_or_404(_runtime(request), job_id)


@get("/checkpoints/{job_id:str}/can-resume", summary="Whether a job can be resumed", responses=ERROR_RESPONSES)
async def can_resume(request: Request[Any, Any, Any], job_id: FromPath[str]) -> CanResumeOut:
    """Return whether the job can be resumed now and why."""
    view = await _checkpoint_or_404(_runtime(request), job_id)
    return CanResumeOut(can_resume=view.can_resume, reason=view.can_resume_reason)


@post(
    "/checkpoints/{job_id:str}/resume", status_code=202, summary="Resume a job as a new job", responses=ERROR_RESPONSES
)
async def resume(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    data: Annotated[ResumeIn | None, Body(description="Optional: callback, fromTurn, note.")] = None,
) -> ResumeOut:
    """Mark the job resumed and request the new job in one atomic, concurrency-checked batch."""
    runtime = _runtime(request)
    body = data or ResumeIn()
    check_job_id(job_id)
    if body.callback is not None:
        check_callback_url(body.callback.url, allow_private=_settings(request).allow_private_callbacks)
    if body.note is not None and not body.note.strip():
        raise ApiError(
            400, "invalid_request", "note is empty; leave it out or say what the agent should do", field="note"
        )
    try:
        history = await load_job(runtime.store, job_id)
    except HistoryError as exc:
        raise ApiError(409, "history_unreadable", f"cannot resume: {exc}", field="jobId") from exc
    if history is None or history.checkpoint is None:
        raise ApiError(404, "not_found", f"job {job_id} not found; list jobs with GET /checkpoints", field="jobId")

    view = await live_view(runtime, history.checkpoint)
    idempotency_key = request.headers.get("idempotency-key")
    new_id = derived_job_id("resume", job_id, idempotency_key) if idempotency_key else new_job_id()
    if view.job_status == "resumed" and view.resumed_as == new_id:
        # A retry with the same Idempotency-Key gets the first request's response.
        return ResumeOut(original_job_id=job_id, new_job_id=new_id, resuming_from_turn=_resumed_from(history, new_id))
    if not view.can_resume:
        raise ApiError(409, "cannot_resume", f"cannot resume: {view.can_resume_reason}", resumedAs=view.resumed_as)

    from_turn = view.turns if body.from_turn is None else body.from_turn
    if not 1 <= from_turn <= view.turns and not (from_turn == 0 and view.turns == 0):
        allowed = f"use 1 to {view.turns}" if view.turns else "the job has no completed turn, so use 0 or leave it out"
        raise ApiError(400, "invalid_request", f"fromTurn {from_turn} is out of range; {allowed}", field="fromTurn")
    plan = plan_resume(
        history,
        new_job_id=new_id,
        from_turn=from_turn,
        at=now_iso(),
        note=body.note,
        callback_url=body.callback.url if body.callback else None,
    )
    try:
        await commit_resume(runtime.store, plan)
    except AppendConflictError as exc:
        winner = await read_checkpoint(runtime, job_id)
        again = await load_job(runtime.store, job_id)
        current = again.checkpoint if again else winner
        if current is not None and current.resumed_as == new_id:
            return ResumeOut(original_job_id=job_id, new_job_id=new_id, resuming_from_turn=from_turn)
        resumed_as = current.resumed_as if current else None
        reason = (
            f"job {job_id} was already resumed as job {resumed_as}; resume that job instead"
            if resumed_as
            else f"job {job_id} changed while resuming; check its status and retry"
        )
        raise ApiError(409, "cannot_resume", f"cannot resume: {reason}", resumedAs=resumed_as) from exc
    return ResumeOut(original_job_id=job_id, new_job_id=new_id, resuming_from_turn=from_turn)


def _resumed_from(history: JobHistory, new_id: str) -> int:
    for item in reversed(history.events):
        if isinstance(item.event, JobResumed) and item.event.new_job_id == new_id:
            return item.event.from_turn
    return history.checkpoint.turns if history.checkpoint else 0


@get(
    "/checkpoints/{job_id:str}/messages",
    summary="The job's message history, rebuilt from events",
    responses=ERROR_RESPONSES,
)
async def messages(request: Request[Any, Any, Any], job_id: FromPath[str]) -> dict[str, Any]:
    """Return the conversation a resume would send the model, with the repairs made and the forks."""
    check_job_id(job_id)
    try:
        lineage = await load_lineage(_runtime(request).store, job_id)
    except HistoryError as exc:
        raise ApiError(404, "not_found", f"job {job_id} not found or unreadable: {exc.detail}", field="jobId") from exc
    conversation = lineage.conversation()
    return {
        "jobId": job_id,
        "messages": conversation.messages,
        "repairs": [{"turn": r.turn, "kind": r.kind, "detail": r.detail} for r in conversation.repairs],
        "forks": [{"jobId": origin, "fromTurn": turn} for origin, turn in lineage.forks],
    }


@delete(
    "/checkpoints/{job_id:str}",
    status_code=200,
    summary="Delete a job's checkpoint and history",
    responses=ERROR_RESPONSES,
)
async def delete_checkpoint(request: Request[Any, Any, Any], job_id: FromPath[str]) -> dict[str, bool]:
    """Record the deletion, then purge the job's history so a rebuild does not bring it back."""
    runtime = _runtime(request)
    await _checkpoint_or_404(runtime, job_id)
    try:
        await delete_job(runtime.store, job_id, reason="api", live=partial(live_view, runtime))
    except JobNotFoundError as exc:
        raise ApiError(404, "not_found", str(exc), field="jobId") from exc
    except JobActiveError as exc:
        raise ApiError(409, "job_active", str(exc), field="jobId") from exc
    except DeletionConflictError as exc:
        raise ApiError(409, "job_changed", str(exc), field="jobId") from exc
    return {"deleted": True}


API_ROUTES = [
    health,
    ready,
    create_job,
    job_status,
    job_events,
    cancel_job,
    checkpoints,
    checkpoint,
    can_resume,
    resume,
    messages,
    delete_checkpoint,
]
