"""Human-readable output of the CLI, in the layout users know from the checkpoint tools."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

__all__ = ["checkpoint_block", "checkpoint_list", "format_time", "message_history", "shorten"]


def shorten(text: str, limit: int = 200) -> str:
    """Cut `text` to `limit` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_time(stamp: str | None) -> str:
    """Format an RFC 3339 time as `2024-01-15 10:30:45` (UTC), or `-` when missing."""
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return stamp


def _yes_no(flag: bool) -> str:
    return "✅ Yes" if flag else "❌ No"


def checkpoint_block(checkpoint: dict[str, Any]) -> str:
    """Render one checkpoint as `inspect` shows it."""
    turns, max_turns = int(checkpoint["turns"]), int(checkpoint["maxTurns"])
    percent = round(100 * turns / max_turns) if max_turns else 0
    lines = [
        "📋 Checkpoint Information:",
        f"   Job ID: {checkpoint['jobId']}",
        f"   Status: {checkpoint['jobStatus']}",
        f"   Repository: {checkpoint.get('repository', '-')}",
        f"   Task: {shorten(str(checkpoint.get('task', '')), 100)}",
        f"   Turns: {turns}/{max_turns} ({percent}%)",
        f"   Messages: {checkpoint['messages']}",
        f"   Created: {format_time(checkpoint.get('createdAt'))}",
        f"   Last Updated: {format_time(checkpoint.get('lastUpdated'))}",
        f"   Can Resume: {_yes_no(bool(checkpoint['canResume']))}",
    ]
    if not checkpoint["canResume"] or checkpoint["jobStatus"] in ("failed", "unknown"):
        lines.append(f"   Reason: {checkpoint.get('canResumeReason', '')}")
    failure = checkpoint.get("failure")
    if failure:
        retry = (
            f", retry not before {format_time(failure.get('retryNotBefore'))}" if failure.get("retryNotBefore") else ""
        )
        lines.append(f"   Failure: {failure['kind']}: {failure['message']}{retry}")
    if checkpoint.get("resumeOf"):
        lines.append(f"   Resumed From: job {checkpoint['resumeOf']} at turn {checkpoint.get('fromTurn')}")
    if checkpoint.get("resumedAs"):
        lines.append(f"   Resumed As: job {checkpoint['resumedAs']}")
    usage = checkpoint.get("usage") or {}
    if usage:
        lines.append(
            f"   Tokens: {usage.get('inputTokens', 0)} in, {usage.get('outputTokens', 0)} out"
            f" (estimated ${usage.get('estimatedCostUsd', 0):.4f})"
        )
    if checkpoint.get("summary"):
        lines.append(f"   Summary: {shorten(str(checkpoint['summary']), 300)}")
    return "\n".join(lines)


def checkpoint_list(checkpoints: list[dict[str, Any]]) -> str:
    """Render the checkpoint list as `checkpoints` shows it."""
    if not checkpoints:
        return "No checkpoints found."
    blocks = [f"Found {len(checkpoints)} checkpoint(s):"]
    for checkpoint in checkpoints:
        blocks.append(
            "\n".join(
                [
                    f"📋 Job ID: {checkpoint['jobId']}",
                    f"   Status: {checkpoint['jobStatus']}",
                    f"   Turns: {checkpoint['turns']}/{checkpoint['maxTurns']}",
                    f"   Messages: {checkpoint['messages']}",
                    f"   Last Updated: {format_time(checkpoint.get('lastUpdated'))}",
                    f"   Can Resume: {_yes_no(bool(checkpoint['canResume']))}",
                ]
            )
        )
    return "\n\n".join(blocks)


def message_history(conversation: dict[str, Any]) -> str:
    """Render the full message history of `inspect --verbose`, one block per message."""
    lines = ["📜 Full Message History:"]
    for fork in conversation.get("forks", []):
        lines.append(f"(history continues job {fork['jobId']} from turn {fork['fromTurn']})")
    for index, message in enumerate(conversation.get("messages", []), start=1):
        lines.append("")
        lines.append(f"--- Message {index} ({message['role']}) ---")
        content = message["content"]
        if isinstance(content, str):
            lines.append(shorten(content, 500))
            continue
        for block in content:
            lines.extend(_block_lines(block))
    repairs = conversation.get("repairs", [])
    if repairs:
        lines.append("")
        lines.append("🔧 Repaired history:")
        lines.extend(f"   turn {repair['turn']}: {repair['detail']}" for repair in repairs)
    return "\n".join(lines)


def _block_lines(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "text":
        return [f"[text] {shorten(str(block.get('text', '')), 500)}"]
    if kind == "tool_use":
        arguments = json.dumps(block.get("input"), ensure_ascii=False, separators=(",", ":"))
        return [
            f"[tool_use] {block.get('name')} - ID: {block.get('id')}",
            f"  Input: {shorten(arguments, 200)}",
        ]
    if kind == "tool_result":
        content = block.get("content")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        marker = " (error)" if block.get("is_error") else ""
        return [f"[tool_result] ID: {block.get('tool_use_id')}{marker}", f"  Result: {shorten(text, 200)}"]
    if kind in ("thinking", "redacted_thinking"):
        return [f"[{kind}] {shorten(str(block.get('thinking', '')), 200)}"]
    return [f"[{kind}] {shorten(json.dumps(block, ensure_ascii=False), 200)}"]
