"""GitHub `issue_comment` payloads and the pure decision of whether one creates a job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import msgspec

__all__ = ["BOT_MARKER", "COMMAND_PREFIX", "Decision", "PayloadError", "decide", "decode_payload"]

COMMAND_PREFIX = "/code "
BOT_MARKER = "<!-- turnlog -->"
"""turnlog puts this marker in every comment it writes, so its own comments never start a job."""


class PayloadError(ValueError):
    """A delivery body that cannot be read; carries the field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class Account(msgspec.Struct, frozen=True):
    login: str = ""
    type: str = "User"


class Owner(msgspec.Struct, frozen=True):
    login: str


class Repository(msgspec.Struct, frozen=True):
    owner: Owner
    name: str
    default_branch: str = "main"


class Issue(msgspec.Struct, frozen=True):
    number: int
    pull_request: dict[str, Any] | None = None


class Comment(msgspec.Struct, frozen=True):
    body: str
    id: int | None = None
    user: Account | None = None
    performed_via_github_app: dict[str, Any] | None = None


class Installation(msgspec.Struct, frozen=True):
    id: int


class IssueCommentEvent(msgspec.Struct, frozen=True):
    """The fields of an `issue_comment` delivery turnlog reads; others are ignored."""

    action: str
    repository: Repository
    issue: Issue
    comment: Comment
    installation: Installation | None = None
    sender: Account | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What a delivery means: a task to run, or the reason it is ignored."""

    task: str | None
    ignored: str | None


def decode_payload(raw: bytes, content_type: str) -> IssueCommentEvent:
    """Decode a JSON or form-encoded (`payload=`) delivery, naming the missing or invalid field."""
    body = raw
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(raw.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise PayloadError("form-encoded delivery has no `payload` field", field="payload")
        body = fields["payload"][0].encode()
    try:
        return msgspec.json.decode(body, type=IssueCommentEvent)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("at `$.", 1)[-1].rstrip("`") if "at `$." in text else None
        raise PayloadError(f"invalid issue_comment payload: {text}", field=field) from exc
    except msgspec.DecodeError as exc:
        raise PayloadError(f"delivery body is not valid JSON: {exc}") from exc


def decide(event: IssueCommentEvent) -> Decision:
    """Decide whether a comment is a `/code` command that should start a job."""
    if event.action != "created":
        return Decision(None, f"comment {event.action}, only new comments start jobs")
    if event.sender is not None and event.sender.type == "Bot":
        return Decision(None, "comment written by a bot")
    if event.comment.user is not None and event.comment.user.type == "Bot":
        return Decision(None, "comment written by a bot")
    if event.comment.performed_via_github_app is not None:
        return Decision(None, "comment written by a GitHub App")
    if BOT_MARKER in event.comment.body:
        return Decision(None, "comment written by turnlog")
    body = event.comment.body.lstrip()
    if not body.startswith(COMMAND_PREFIX):
        return Decision(None, "comment is not a /code command")
    task = body[len(COMMAND_PREFIX) :].strip()
    if not task:
        return Decision(None, "/code command without a task")
    return Decision(task, None)
