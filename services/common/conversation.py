"""Rebuilding the model conversation from recorded turns, repaired so the Messages API accepts it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.events import ToolResult, TurnCompleted

__all__ = ["NUDGE_TEXT", "Conversation", "Repair", "build_conversation"]

NUDGE_TEXT = "Continue with the task. Call the finish tool with a summary when it is done."
"""Sent when a turn ended without any tool call, so the next request still ends with a user message."""

LOST_RESULT_TEXT = (
    "The outcome of this tool call is unknown: its result was lost when the job was interrupted. "
    "Check the workspace before relying on it."
)


@dataclass(frozen=True, slots=True)
class Repair:
    """One change made to a stored history so that the API accepts it, shown by `inspect`."""

    turn: int
    kind: str
    detail: str


@dataclass(slots=True)
class Conversation:
    """The messages to send the model, and the repairs made while building them."""

    messages: list[dict[str, Any]]
    repairs: list[Repair] = field(default_factory=list)


def build_conversation(task: str, turns: list[TurnCompleted], notes: dict[int, str]) -> Conversation:
    """Build the request messages: the task, then per turn the assistant's answer and the user's results.

    `notes` maps a turn number to a user instruction added after that turn (0: before the first).
    Repairs follow the Messages API rules: every `tool_use` gets a `tool_result` in the next user
    message before any text, text blocks are never empty, and thinking blocks are kept unchanged.
    """
    conversation = Conversation(messages=[])
    first: list[dict[str, Any]] = [{"type": "text", "text": task}]
    if notes.get(0):
        first.append({"type": "text", "text": notes[0]})
    conversation.messages.append({"role": "user", "content": first})

    for record in turns:
        blocks = _assistant_blocks(record, conversation.repairs)
        if blocks:
            conversation.messages.append({"role": "assistant", "content": blocks})
        user_blocks = _result_blocks(record, blocks, conversation.repairs)
        note = notes.get(record.turn)
        if note:
            user_blocks.append({"type": "text", "text": note})
        if not user_blocks:
            user_blocks.append({"type": "text", "text": NUDGE_TEXT})
        _append_user(conversation.messages, user_blocks)
    return conversation


def assistant_blocks_raw(record: TurnCompleted) -> list[dict[str, Any]]:
    """Decode the assistant content exactly as stored, without repairs."""
    blocks = msgspec.json.decode(record.assistant_content)
    return blocks if isinstance(blocks, list) else []


def _assistant_blocks(record: TurnCompleted, repairs: list[Repair]) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    for block in assistant_blocks_raw(record):
        if block.get("type") == "text" and not str(block.get("text", "")).strip():
            repairs.append(Repair(record.turn, "empty_text_dropped", "an empty text block was removed"))
            continue
        kept.append(block)
    if kept and kept[-1].get("type") == "text":
        text = str(kept[-1]["text"])
        if text != text.rstrip():
            kept[-1] = {**kept[-1], "text": text.rstrip()}
            repairs.append(Repair(record.turn, "trailing_whitespace", "trailing whitespace was removed"))
    return kept


def _result_blocks(
    record: TurnCompleted, assistant: list[dict[str, Any]], repairs: list[Repair]
) -> list[dict[str, Any]]:
    results: dict[str, ToolResult] = {result.tool_use_id: result for result in record.tool_results}
    blocks: list[dict[str, Any]] = []
    for block in assistant:
        if block.get("type") != "tool_use":
            continue
        tool_use_id = str(block.get("id"))
        result = results.get(tool_use_id)
        if result is None:
            repairs.append(
                Repair(record.turn, "lost_tool_result", f"tool_use {tool_use_id} had no result; marked unknown")
            )
            result = ToolResult(tool_use_id=tool_use_id, content=LOST_RESULT_TEXT, is_error=True)
        blocks.append(_tool_result_block(result))
    return blocks


def _tool_result_block(result: ToolResult) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": result.tool_use_id,
        "content": result.content or "(no output)",
    }
    if result.is_error:
        block["is_error"] = True
    return block


def _append_user(messages: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    # Two user messages in a row happen when a turn had no assistant content; merge them so roles alternate.
    last = messages[-1]
    if last["role"] == "user":
        last["content"] = [*last["content"], *blocks]
    else:
        messages.append({"role": "user", "content": blocks})
