"""Request and response bodies of the REST API, in the camelCase JSON users and scripts rely on."""

from __future__ import annotations

import msgspec

from contracts.checkpoint import Checkpoint

__all__ = [
    "CallbackSpec",
    "CanResumeOut",
    "CheckpointList",
    "CreateJobIn",
    "JobAccepted",
    "ResumeIn",
    "ResumeOut",
]


class CallbackSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where to POST the job's outcome when it ends."""

    url: str


class CreateJobIn(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Body of `POST /jobs`."""

    repository: str
    task: str
    max_turns: int | None = None
    callback: CallbackSpec | None = None


class ResumeIn(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Body of `POST /checkpoints/{jobId}/resume`; every field is optional."""

    callback: CallbackSpec | None = None
    from_turn: int | None = None
    note: str | None = None


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A job was created, or an earlier identical request's job is returned."""

    job_id: str
    status: str
    duplicate: bool = False


class ResumeOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A resume was accepted: the new job continues the original from `resumingFromTurn`."""

    original_job_id: str
    new_job_id: str
    resuming_from_turn: int


class CanResumeOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Whether a job can be resumed now, and why."""

    can_resume: bool
    reason: str


class CheckpointList(msgspec.Struct, frozen=True, kw_only=True):
    """Every checkpoint, newest first."""

    checkpoints: list[Checkpoint]
