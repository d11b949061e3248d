"""Rebuilding the model conversation from recorded turns, repaired so the Messages API accepts it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.events import ToolResult, TurnCompleted

__all__ = ["LOST_RESULT_TEXT", "NUDGE_TEXT", "Conversation", "ConversationBuilder", "Repair", "build_conversation"]

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
    """Build the request messages: the task, then per turn the assistant's response and the user's results.

    `notes` maps a turn number to a user instruction added after that turn (0: before the first).
    Repairs follow the Messages API rules: every `tool_use` gets a `tool_result` in the next user
    message before any text, text blocks are never empty, a tool_use cut off by `max_tokens` is
    dropped, and thinking blocks are kept unchanged.
    """
    builder = ConversationBuilder(task, notes)
    for record in turns:
        builder.add(record)
    return builder.conversation


class ConversationBuilder:
    """Builds a conversation turn by turn, so that a running job decodes each recorded turn only once."""

    def __init__(self, task: str, notes: dict[int, str]) -> None:
        self._notes = notes
        self.turns_added = 0
        self.last_record: TurnCompleted | None = None
        first: list[dict[str, Any]] = [{"type": "text", "text": task}]
        if notes.get(0):
            first.append({"type": "text", "text": notes[0]})
        self.conversation = Conversation(messages=[{"role": "user", "content": first}])

    def add(self, record: TurnCompleted) -> None:
        """Append one recorded turn: the assistant's response, then the user message with its results."""
        conversation = self.conversation
        blocks = _assistant_blocks(record, conversation.repairs)
        if blocks:
            conversation.messages.append({"role": "assistant", "content": blocks})
        user_blocks = _result_blocks(record, blocks, conversation.repairs)
        note = self._notes.get(record.turn)
        if note:
            user_blocks.append({"type": "text", "text": note})
        if not user_blocks:
            user_blocks.append({"type": "text", "text": NUDGE_TEXT})
        _append_user(conversation.messages, user_blocks)
        self.turns_added += 1
        self.last_record = record


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
        if block.get("type") == "tool_use" and not isinstance(block.get("input"), dict):
            repairs.append(
                Repair(record.turn, "tool_input_replaced", f"tool_use {block.get('id')} had no input object; sent {{}}")
            )
            block = {**block, "input": {}}
        kept.append(block)
    if record.stop_reason == "max_tokens" and kept and kept[-1].get("type") == "tool_use":
        # max_tokens cut this call's input short, so it never ran and its input cannot be trusted.
        dropped = kept.pop()
        repairs.append(
            Repair(
                record.turn,
                "truncated_tool_use_dropped",
                f"tool_use {dropped.get('id')} was cut off at max_tokens; removed",
            )
        )
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
