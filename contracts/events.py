"""The event catalog: past-tense facts appended to a job's history, one versioned tag each."""

from __future__ import annotations

import msgspec

__all__ = [
    "AutoResumeDecided",
    "CallbackDelivered",
    "CallbackFailed",
    "CheckpointDeleted",
    "Event",
    "FileChange",
    "GitHubSource",
    "JobCancelRequested",
    "JobCancelled",
    "JobCompleted",
    "JobFailed",
    "JobRequested",
    "JobResumed",
    "JobStarted",
    "ToolResult",
    "TurnCompleted",
    "Usage",
]


class GitHubSource(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The GitHub webhook delivery a job was requested by."""

    installation_id: int | None = None
    issue_number: int
    delivery_id: str | None = None
    comment_id: int | None = None
    is_pull_request: bool = False
    sender: str | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Token usage of one model call, as the Messages API reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class ToolResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The result of one `tool_use` block, sent back to the model in the next user message."""

    tool_use_id: str
    content: str
    is_error: bool = False


class FileChange(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The new content of one workspace file after a turn; `content` None means the file was deleted."""

    path: str
    content: str | None


class _Base(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    tag_field="type",
    forbid_unknown_fields=False,
):
    job_id: str
    at: str
    """When the fact happened, as an RFC 3339 UTC timestamp."""


class JobRequested(_Base, tag="job.requested.v1", frozen=True, kw_only=True):
    """A job was asked for, by a webhook, the REST API or a resume of an earlier job."""

    repository: str
    task: str
    max_turns: int
    callback_url: str | None = None
    github: GitHubSource | None = None
    resume_of: str | None = None
    from_turn: int | None = None
    note: str | None = None


class JobStarted(_Base, tag="job.started.v1", frozen=True, kw_only=True):
    """A runner took the job, either for the first time or over from a runner that stopped."""

    runner_id: str
    base_commit: str
    attempt: int = 1


class TurnCompleted(_Base, tag="turn.completed.v1", frozen=True, kw_only=True):
    """One agent turn: the model's response exactly as received, the tools it ran and what they changed."""

    turn: int
    assistant_content: msgspec.Raw
    """The `content` array of the model's response, byte for byte as the API returned it."""
    tool_results: list[ToolResult]
    stop_reason: str
    model: str
    usage: Usage
    model_ms: float
    tools_ms: float
    changes: list[FileChange] = []


class JobFailed(_Base, tag="job.failed.v1", frozen=True, kw_only=True):
    """The job stopped without finishing its task."""

    kind: str
    """One of `rate_limited`, `overloaded`, `upstream_error` (retryable), `model_rejected`,
    `output_truncated`, `output_too_large`, `max_turns`, `workspace_error`, `history_unreadable`."""
    message: str
    retryable: bool
    retry_not_before: str | None = None
    turns: int = 0


class JobCompleted(_Base, tag="job.completed.v1", frozen=True, kw_only=True):
    """The model called `finish`: the job reached its goal."""

    summary: str
    turns: int


class JobCancelRequested(_Base, tag="job.cancel_requested.v1", frozen=True, kw_only=True):
    """A user asked to stop the job after its current turn."""

    reason: str = ""


class JobCancelled(_Base, tag="job.cancelled.v1", frozen=True, kw_only=True):
    """The runner stopped the job on a user's request."""

    turns: int


class JobResumed(_Base, tag="job.resumed.v1", frozen=True, kw_only=True):
    """The job was superseded by a new job that continues its history from `from_turn`."""

    new_job_id: str
    from_turn: int


class CheckpointDeleted(_Base, tag="checkpoint.deleted.v2", frozen=True, kw_only=True):
    """A user or the retention policy deleted the job's checkpoint and history.

    Version 2 splits who deleted the job from why: in version 1, `reason` held the origin label
    (`api`). `contracts.upcast` turns stored version 1 events into this shape on decode.
    """

    requested_by: str = "api"
    """Who deleted the job: `api` (a user, through the REST API or the CLI) or `retention` (the policy)."""
    reason: str = ""
    """Why, in words, such as "older than 30 days"; empty when nobody gave a reason."""


class CallbackDelivered(_Base, tag="callback.delivered.v1", frozen=True, kw_only=True):
    """The job's callback URL accepted the POST of its outcome."""

    url: str
    delivery_id: str
    """The `X-Turnlog-Delivery` header: the same on every attempt, so receivers can deduplicate."""
    attempts: int
    status: int
    """HTTP status of the accepted attempt."""


class CallbackFailed(_Base, tag="callback.failed.v1", frozen=True, kw_only=True):
    """The job's callback URL did not accept its outcome before the delivery deadline, or rejected it."""

    url: str
    delivery_id: str
    attempts: int
    last_error: str


class AutoResumeDecided(_Base, tag="autoresume.decided.v1", frozen=True, kw_only=True):
    """The auto-resume service resumed the failed job, or decided it never will and why."""

    decision: str
    """`resumed` or `skipped`."""
    reason: str
    code: str = ""
    """Stable reason code: `resumed`, `not_retryable`, `not_resumable` or `chain_limit`."""
    new_job_id: str | None = None


Event = (
    JobRequested
    | JobStarted
    | TurnCompleted
    | JobFailed
    | JobCompleted
    | JobCancelRequested
    | JobCancelled
    | JobResumed
    | CheckpointDeleted
    | CallbackDelivered
    | CallbackFailed
    | AutoResumeDecided
)
