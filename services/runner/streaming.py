"""Assembling a streamed Messages API response from its Server-Sent Events, with no network access.

The Messages API streaming format sends `message_start`, then per content block
`content_block_start`, `content_block_delta`s and `content_block_stop`, then `message_delta` and
`message_stop`. A `ping` may come anywhere, and an `error` event ends the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.runner.failures import ModelFailure, classify_stream_error

__all__ = ["AssembledMessage", "SseParser", "StreamAssembler"]


@dataclass(slots=True)
class AssembledMessage:
    """A complete streamed response: its `content` encoded as JSON, and the message fields around it."""

    raw_content: bytes
    """The JSON array of content blocks, in the order the stream opened them."""
    stop_reason: str
    model: str
    usage: dict[str, Any]
    truncated_tool_input: bool
    """True when a tool_use block's input JSON was cut off, which happens when `max_tokens` stops the response."""


class SseParser:
    """Split Server-Sent Event lines into (event name, data) pairs; a blank line ends each event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """Take one line without its line break; return the finished event when `line` is blank."""
        if not line:
            if not self._data and not self._event:
                return None
            finished = (self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return finished
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


@dataclass(slots=True)
class _Block:
    start: dict[str, Any]
    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    partial_json: list[str] = field(default_factory=list)
    citations: list[Any] = field(default_factory=list)
    signature: str | None = None


class StreamAssembler:
    """Rebuild the message a stream describes, block by block, from its decoded events.

    Byte-exactness: a stream carries no single `content` array, so the stored bytes are the compact
    JSON encoding of the assembled blocks. Each block keeps every field of its `content_block_start`
    in the order the API sent them, text and thinking are the concatenated deltas, and a tool_use
    `input` is the concatenated `partial_json` text itself, embedded unchanged.
    """

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._message: dict[str, Any] = {}
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self.finished = False

    def feed(self, event: str, data: str) -> None:
        """Apply one event; raise ModelFailure for an `error` event or an unreadable one."""
        if event == "ping":
            return
        try:
            payload = json.loads(data) if data else {}
        except json.JSONDecodeError as exc:
            raise ModelFailure("upstream_error", f"unreadable stream event {event!r}: {exc}", True) from exc
        if not isinstance(payload, dict):
            raise ModelFailure("upstream_error", f"stream event {event!r} is not a JSON object", True)
        kind = str(payload.get("type", event))

        if kind == "error":
            error = payload.get("error")
            details: dict[str, Any] = error if isinstance(error, dict) else {}
            raise classify_stream_error(str(details.get("type", "api_error")), str(details.get("message", "")))
        if kind == "message_start":
            message = payload.get("message") or {}
            self._message = message if isinstance(message, dict) else {}
            self._usage.update(self._message.get("usage") or {})
        elif kind == "content_block_start":
            block = payload.get("content_block")
            self._blocks[int(payload["index"])] = _Block(start=dict(block) if isinstance(block, dict) else {})
        elif kind == "content_block_delta":
            self._delta(int(payload["index"]), payload.get("delta") or {})
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            usage = payload.get("usage") or {}
            self._usage.update({key: value for key, value in usage.items() if value is not None})
        elif kind == "message_stop":
            self.finished = True

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._blocks.get(index)
        if block is None:
            raise ModelFailure("upstream_error", f"stream sent a delta for unopened content block {index}", True)
        kind = delta.get("type")
        if kind == "text_delta":
            block.text.append(str(delta.get("text", "")))
        elif kind == "input_json_delta":
            block.partial_json.append(str(delta.get("partial_json", "")))
        elif kind == "thinking_delta":
            block.thinking.append(str(delta.get("thinking", "")))
        elif kind == "signature_delta":
            block.signature = str(delta.get("signature", ""))
        elif kind == "citations_delta":
            block.citations.append(delta.get("citation"))

    def result(self) -> AssembledMessage:
        """Return the assembled message; raise ModelFailure when the stream ended before `message_stop`."""
        if not self.finished:
            raise ModelFailure("upstream_error", "the model's stream ended before message_stop", True)
        truncated = False
        blocks: list[dict[str, Any]] = []
        for index in sorted(self._blocks):
            block, cut = _finish_block(self._blocks[index])
            truncated = truncated or cut
            blocks.append(block)
        return AssembledMessage(
            raw_content=msgspec.json.encode(blocks),
            stop_reason=self._stop_reason or "end_turn",
            model=str(self._message.get("model", "")),
            usage=self._usage,
            truncated_tool_input=truncated,
        )


def _finish_block(block: _Block) -> tuple[dict[str, Any], bool]:
    assembled = dict(block.start)
    if block.text:
        assembled["text"] = str(assembled.get("text", "")) + "".join(block.text)
    if block.thinking:
        assembled["thinking"] = str(assembled.get("thinking", "")) + "".join(block.thinking)
    if block.signature is not None:
        assembled["signature"] = block.signature
    if block.citations:
        assembled["citations"] = [*(assembled.get("citations") or []), *block.citations]
    if "input" not in assembled or not block.partial_json:
        return assembled, False

    text = "".join(block.partial_json)
    if not text:
        return assembled, False
    try:
        decoded = msgspec.json.decode(text)
    except msgspec.DecodeError:
        # Input cut off mid-JSON: keep a valid empty input so the block still encodes, and report it.
        assembled["input"] = {}
        return assembled, True
    assembled["input"] = msgspec.Raw(text.encode()) if isinstance(decoded, dict) else {}
    return assembled, not isinstance(decoded, dict)
