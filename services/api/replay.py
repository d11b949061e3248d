"""Replay from the event log: live event streams, the job's state at a past turn, and projection rebuilds."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath, Parameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import topology
from contracts.codec import EventDecodeError, decode_event, encode_event, event_tag
from contracts.events import TurnCompleted
from services.api.errors import ApiError, check_job_id
from services.common.checkout import CheckoutError, diff_against_base, prepare_checkout, repository_path
from services.common.clock import to_iso
from services.common.fold import fold
from services.common.history import HistoryError, JobHistory, Lineage, load_job, load_lineage
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.projector.rebuild import RebuildConflictError, rebuild_projection

__all__ = ["REPLAY_ROUTES", "job_event_stream", "job_replay", "rebuild_projections"]

KEEPALIVE_SECONDS = 15.0
"""How long the event stream stays silent before it sends a `: keepalive` comment line."""


@get("/jobs/{job_id:str}/events/stream", summary="Server-Sent Events: the job's events, past then live")
async def job_event_stream(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    after: int = Parameter(default=0, ge=0, description="Start after this stream sequence; Last-Event-ID wins."),
) -> ServerSentEvent:
    """Stream every event of the job: the stored ones first, then each new one as it is appended.

    Each message has `id:` = the event's stream sequence, so a client that reconnects with
    `Last-Event-ID` continues after the last event it received. A `: keepalive` comment is sent
    after 15 s without events.
    """
    runtime: Runtime = request.app.state.runtime
    check_job_id(job_id)
    start = _last_event_id(request.headers.get("last-event-id"), after) + 1
    if await runtime.store.last_sequence(job_id) == 0:
        raise ApiError(404, "not_found", f"job {job_id} not found; list jobs with GET /checkpoints", field="jobId")
    return ServerSentEvent(_stream(runtime, job_id, start), headers={"X-Accel-Buffering": "no"})


def _last_event_id(header: str | None, after: int) -> int:
    if header is None or not header.strip():
        return after
    try:
        value = int(header.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(
            400,
            "invalid_request",
            f"invalid Last-Event-ID {header!r}: expected the stream sequence of an event (an integer >= 0)",
            field="Last-Event-ID",
        )
    return value


async def _stream(runtime: Runtime, job_id: str, start: int) -> AsyncIterator[ServerSentEventMessage]:
    # An ordered consumer is ephemeral and in memory; nats-py recreates it after a gap, from the last
    # sequence it delivered, so the client sees every event once and in order.
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
    subscription = await runtime.js.subscribe(
        topology.job_filter(job_id), stream=topology.EVENTS_STREAM, ordered_consumer=True, config=config
    )
    try:
        while True:
            try:
                message = await subscription.next_msg(timeout=KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keepalive")
                continue
            item = _event_item(message)
            yield ServerSentEventMessage(
                data=msgspec.json.encode(item).decode(), id=item["sequence"], event=item["type"] or "undecodable"
            )
    finally:
        # Runs when the client disconnects: the ordered consumer goes away with the subscription.
        await subscription.unsubscribe()


def _event_item(message: Msg) -> dict[str, Any]:
    sequence = message.metadata.sequence.stream
    time = to_iso(message.metadata.timestamp) if message.metadata.timestamp else ""
    try:
        event = decode_event(message.data, sequence=sequence)
    except EventDecodeError as exc:
        return {"sequence": sequence, "time": time, "type": None, "event": None, "error": str(exc)}
    return {
        "sequence": sequence,
        "time": time,
        "type": event_tag(event),
        "event": msgspec.json.decode(encode_event(event)),
        "error": None,
    }


@get("/jobs/{job_id:str}/replay", summary="The job's state at a turn, rebuilt from its events alone")
async def job_replay(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    to_turn: Annotated[
        int | None,
        QueryParameter(name="toTurn", ge=0, description="Stop after this turn; default: the last completed turn."),
    ] = None,
) -> dict[str, Any]:
    """Return the checkpoint, the model conversation and the workspace diff as they were after `toTurn`."""
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    check_job_id(job_id)
    try:
        history = await load_job(runtime.store, job_id)
        if history is None:
            raise ApiError(404, "not_found", f"job {job_id} not found; list jobs with GET /checkpoints", field="jobId")
        full = await load_lineage(runtime.store, job_id)
        turn = full.last_turn if to_turn is None else to_turn
        if turn > full.last_turn:
            raise ApiError(
                400,
                "invalid_request",
                f"toTurn {turn} is past the last completed turn of job {job_id}; use 0 to {full.last_turn}",
                field="toTurn",
            )
        owner = await _owner_of_turn(runtime, history, turn)
        lineage = await load_lineage(runtime.store, owner.job_id, to_turn=turn)
    except HistoryError as exc:
        raise ApiError(409, "history_unreadable", f"cannot replay job {job_id}: {exc}", field="jobId") from exc

    checkpoint = fold(_events_through_turn(owner, turn))
    conversation = lineage.conversation()
    diff, diff_error = await _workspace_diff(settings, lineage)
    return {
        "jobId": job_id,
        "toTurn": turn,
        "lastTurn": full.last_turn,
        "turnJobId": owner.job_id,
        "checkpoint": msgspec.to_builtins(checkpoint) if checkpoint is not None else None,
        "conversation": {
            "jobId": owner.job_id,
            "messages": conversation.messages,
            "repairs": [{"turn": r.turn, "kind": r.kind, "detail": r.detail} for r in conversation.repairs],
            "forks": [{"jobId": origin, "fromTurn": fork_turn} for origin, fork_turn in lineage.forks],
        },
        "files": _files(lineage),
        "diff": diff,
        "diffError": diff_error,
    }


async def _owner_of_turn(runtime: Runtime, history: JobHistory, turn: int) -> JobHistory:
    """Walk up the resume chain to the job whose own history contains `turn`."""
    owner = history
    for _ in range(100):
        request = owner.request
        if request.resume_of is None or turn > (request.from_turn or 0):
            return owner
        parent = await load_job(runtime.store, request.resume_of)
        if parent is None:
            raise HistoryError(owner.job_id, f"resumed from job {request.resume_of}, whose history is gone")
        owner = parent
    raise HistoryError(history.job_id, "resume chain longer than 100 jobs")


def _events_through_turn(history: JobHistory, turn: int) -> list[tuple[int, Any]]:
    """Return the job's events up to and including its turn `turn` (before its first turn for turn 0)."""
    selected: list[tuple[int, Any]] = []
    for stored in history.events:
        event = stored.event
        if isinstance(event, TurnCompleted) and event.turn > turn:
            break
        selected.append((stored.sequence, event))
        if isinstance(event, TurnCompleted) and event.turn == turn:
            break
    return selected


def _files(lineage: Lineage) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for recorded in lineage.turns:
        for change in recorded.changes:
            latest[change.path] = {"path": change.path, "turn": recorded.turn, "deleted": change.content is None}
    return sorted(latest.values(), key=lambda item: str(item["path"]))


async def _workspace_diff(settings: Settings, lineage: Lineage) -> tuple[str | None, str | None]:
    if lineage.base_commit is None:
        return "", None
    scratch = Path(tempfile.mkdtemp(prefix="turnlog-replay-"))
    try:
        source = repository_path(settings.resolved_repos_dir(), lineage.repository)
        _, base = await prepare_checkout(source, scratch / "checkout", lineage.base_commit, lineage.changes())
        return await diff_against_base(scratch / "checkout", base), None
    except CheckoutError as exc:
        return None, f"cannot rebuild the workspace: {exc}"
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


@post("/projections/rebuild", status_code=200, summary="Rebuild every checkpoint from the event log")
async def rebuild_projections(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Rebuild the checkpoints into a new generation and switch to it; the API keeps serving meanwhile."""
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    try:
        report = await rebuild_projection(runtime.js, replicas=settings.replicas)
    except RebuildConflictError as exc:
        raise ApiError(409, "rebuild_in_progress", str(exc)) from exc
    return {
        "generation": report.generation,
        "previousGeneration": report.previous_generation,
        "bucket": report.bucket,
        "jobs": report.jobs,
        "events": report.events,
        "seconds": report.seconds,
    }


REPLAY_ROUTES = [job_event_stream, job_replay, rebuild_projections]
