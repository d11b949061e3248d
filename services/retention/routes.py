"""`POST /cleanup`: apply the retention policy now, or with `dryRun=true` list what it would delete."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, post
from litestar.params import QueryParameter

from services.common.clock import now
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.retention.service import apply_retention, windows_of

__all__ = ["cleanup"]


@post("/cleanup", status_code=200, summary="Apply the retention policy now")
async def cleanup(
    request: Request[Any, Any, Any],
    dry_run: Annotated[
        bool,
        QueryParameter(name="dryRun", description="List the jobs the policy would delete, and delete none."),
    ] = False,
) -> dict[str, Any]:
    """Delete completed jobs older than TURNLOG_RETENTION_COMPLETED and others older than TURNLOG_RETENTION_OTHER."""
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    return await apply_retention(runtime, windows_of(settings), moment=now(), dry_run=dry_run)
