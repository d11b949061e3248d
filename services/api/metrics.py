"""`GET /metrics`: Prometheus text metrics of the projection and the jobs, and the projection lag."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from nats.js.errors import NotFoundError

from contracts import topology
from contracts.checkpoint import JOB_STATUSES, Checkpoint
from services.api.state import live_views
from services.common.runtime import Runtime
from services.projector.generations import active_generation

__all__ = ["ProjectionLag", "metrics", "projection_lag", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4"
"""Prometheus text format 0.0.4; Litestar appends `charset=utf-8` to text media types itself."""


class ProjectionLag:
    """How far the active projector is behind the stream head, in events, and for which generation."""

    def __init__(self, generation: int, events: int | None) -> None:
        self.generation = generation
        self.events = events


async def projection_lag(runtime: Runtime) -> ProjectionLag:
    """Read the active projector consumer's pending and unacknowledged events; None events when it does not exist.

    A batch the projector fetched but has not finished applying counts as behind, so the number is
    `num_pending + num_ack_pending` of the durable consumer.
    """
    active, _ = await active_generation(runtime.js)
    try:
        info = await runtime.js.consumer_info(topology.EVENTS_STREAM, active.consumer)
    except NotFoundError:
        return ProjectionLag(active.generation, None)
    return ProjectionLag(active.generation, int(info.num_pending or 0) + int(info.num_ack_pending or 0))


def render_metrics(views: list[Checkpoint], lag: ProjectionLag, stream_messages: int) -> str:
    """Render the metrics in the Prometheus text exposition format, version 0.0.4."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            number = int(value) if float(value).is_integer() else value
            lines.append(f"{name}{labels} {number}")

    if lag.events is not None:
        metric(
            "turnlog_projection_lag_events",
            "gauge",
            "Events in the stream that the active checkpoint projector has not applied yet.",
            [("", lag.events)],
        )
    metric("turnlog_projection_generation", "gauge", "Active checkpoint projection generation.", [("", lag.generation)])
    metric("turnlog_events_stream_messages", "gauge", "Events stored in the history stream.", [("", stream_messages)])

    by_status = dict.fromkeys(JOB_STATUSES, 0)
    failures: dict[str, int] = {}
    turns = 0
    cost = 0.0
    for view in views:
        by_status[view.job_status] = by_status.get(view.job_status, 0) + 1
        turns += view.turns
        cost += view.usage.estimated_cost_usd
        if view.failure is not None:
            failures[view.failure.kind] = failures.get(view.failure.kind, 0) + 1
    metric(
        "turnlog_jobs",
        "gauge",
        "Jobs with a checkpoint, by live status.",
        [(f'{{status="{status}"}}', count) for status, count in sorted(by_status.items())],
    )
    metric(
        "turnlog_turns",
        "gauge",
        "Turns completed, summed over every job with a checkpoint; deleting jobs lowers it.",
        [("", turns)],
    )
    metric(
        "turnlog_job_failures",
        "gauge",
        "Jobs with a checkpoint whose last failure was of this kind, resumed ones included.",
        [(f'{{kind="{kind}"}}', count) for kind, count in sorted(failures.items())],
    )
    metric(
        "turnlog_estimated_cost_usd",
        "gauge",
        "Estimated model cost in US dollars, summed over every job with a checkpoint (list prices).",
        [("", round(cost, 6))],
    )
    return "\n".join(lines) + "\n"


@get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE)
async def metrics(request: Request[Any, Any, Any]) -> Response[str]:
    """Answer the metrics in the Prometheus text format."""
    runtime: Runtime = request.app.state.runtime
    lag = await projection_lag(runtime)
    info = await runtime.js.stream_info(topology.EVENTS_STREAM)
    views = await live_views(runtime)
    return Response(render_metrics(views, lag, int(info.state.messages)), media_type=CONTENT_TYPE)
