"""`GET /jobs/{jobId}/diff`: rebuild the job's workspace from events in a scratch folder and diff it."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from services.api.errors import ERROR_RESPONSES, ApiError
from services.common.checkout import CheckoutError, diff_against_base, prepare_checkout, repository_path
from services.common.history import HistoryError, load_lineage
from services.common.ids import is_job_id
from services.common.runtime import Runtime
from services.common.settings import Settings

__all__ = ["job_diff"]


@get(
    "/jobs/{job_id:str}/diff", summary="The job's change to the repository as a unified diff", responses=ERROR_RESPONSES
)
async def job_diff(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[str]:
    """Answer `text/x-diff` with every change the job and the jobs it resumed made so far."""
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    if not is_job_id(job_id):
        raise ApiError(400, "invalid_job_id", f"invalid job id {job_id!r}", field="jobId")
    try:
        lineage = await load_lineage(runtime.store, job_id)
    except HistoryError as exc:
        raise ApiError(404, "not_found", f"job {job_id} not found or unreadable: {exc.detail}", field="jobId") from exc
    if lineage.base_commit is None and not lineage.turns:
        return Response("", media_type="text/x-diff")

    scratch = Path(tempfile.mkdtemp(prefix="turnlog-diff-"))
    try:
        source = repository_path(settings.resolved_repos_dir(), lineage.repository)
        _, base = await prepare_checkout(source, scratch / "checkout", lineage.base_commit, lineage.changes())
        text = await diff_against_base(scratch / "checkout", base)
    except CheckoutError as exc:
        raise ApiError(409, "checkout_failed", f"cannot rebuild the workspace of job {job_id}: {exc}") from exc
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    return Response(text, media_type="text/x-diff")
