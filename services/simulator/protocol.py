"""Anthropic Messages API wire format: message bodies, SSE events, error bodies, ids and headers.

The shapes follow the Messages API reference (https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/api/messages-streaming) as read by the `anthropic` Python SDK 2.17.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.simulator.script import AgentStep

__all__ = [
    "REQUESTS_LIMIT",
    "TOKENS_LIMIT",
    "build_message",
    "canonical_json",
    "encode_sse",
    "error_body",
    "error_type_for_status",
    "estimate_tokens",
    "interrupted_stream",
    "new_request_id",
    "rate_limit_headers",
    "stream_message",
    "truncated_message",
    "truncated_stream",
]

# Limits reported in the `anthropic-ratelimit-*` headers. The simulator enforces none of them.
REQUESTS_LIMIT = 4000
TOKENS_LIMIT = 400_000

_ID_ALPHABET = string.digits + string.ascii_letters
_ID_LENGTH = 24
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_TEXT_CHUNK_WORDS = 4
_JSON_CHUNK_CHARS = 48


def canonical_json(value: object) -> str:
    """Serialize `value` compactly with sorted keys, so equal values give identical text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def estimate_tokens(value: object) -> int:
    """Estimate a token count as a quarter of the JSON length, at least 1.

    This is an estimate for plausible `usage` numbers only: real tokenizers give other counts.
    """
    return max(1, len(canonical_json(value)) // 4)


def error_type_for_status(status: int) -> str:
    """Return the API error type for an HTTP status, falling back to the 4xx or 5xx family type."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    """Build an API error body such as `{"type": "error", "error": {...}, "request_id": ...}`."""
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


def new_request_id() -> str:
    """Return a random request id in the API's `req_...` form; it is the one value that is not derived."""
    return "req_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def _derived_id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).digest()
    number = int.from_bytes(digest, "big")
    characters = []
    for _ in range(_ID_LENGTH):
        number, index = divmod(number, len(_ID_ALPHABET))
        characters.append(_ID_ALPHABET[index])
    return prefix + "".join(characters)


def build_message(request: Mapping[str, Any], step: AgentStep, turn: int) -> dict[str, Any]:
    """Build the non-streaming response body for one scripted step.

    Ids hash the conversation and the turn, so replaying the same request yields the same bytes.
    """
    messages = request.get("messages", [])
    # `stream` changes the framing, not the prompt, so streamed and plain answers report the same usage.
    prompt = {key: value for key, value in request.items() if key != "stream"}
    content: list[dict[str, Any]] = [{"type": "text", "text": step.text}]
    if step.tool_name is not None:
        tool_use_id = _derived_id("toolu_", "tool_use", messages, turn)
        content.append({"type": "tool_use", "id": tool_use_id, "name": step.tool_name, "input": step.tool_input})

    return {
        "id": _derived_id("msg_", "message", messages, turn),
        "type": "message",
        "role": "assistant",
        "model": request.get("model", ""),
        "content": content,
        "stop_reason": "tool_use" if step.tool_name is not None else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": estimate_tokens(prompt),
            "output_tokens": estimate_tokens(content),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def encode_sse(event: str, data: Mapping[str, Any]) -> bytes:
    """Encode one Server-Sent Event the way the API frames it: `event:` and `data:` lines, a blank line."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def _message_start(message: Mapping[str, Any]) -> bytes:
    usage = message["usage"]
    started = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    return encode_sse("message_start", {"type": "message_start", "message": started})


def _block_events(index: int, block: Mapping[str, Any]) -> list[bytes]:
    delta_type = "content_block_delta"
    if block["type"] == "text":
        events = [_block_start(index, {"type": "text", "text": ""})]
        for chunk in _split_words(block["text"]):
            delta = {"type": "text_delta", "text": chunk}
            events.append(encode_sse(delta_type, {"type": delta_type, "index": index, "delta": delta}))
    else:
        events = [_block_start(index, {**block, "input": {}})]
        # The API opens every tool input with an empty fragment before the JSON itself.
        serialized = json.dumps(block["input"], ensure_ascii=False, separators=(",", ":"))
        fragments = ["", *_split_chars(serialized)]
        for fragment in fragments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            events.append(encode_sse(delta_type, {"type": delta_type, "index": index, "delta": delta}))

    events.append(encode_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _block_start(index: int, block: Mapping[str, Any]) -> bytes:
    return encode_sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _split_words(text: str) -> list[str]:
    words = text.split(" ")
    chunks = [" ".join(words[i : i + _TEXT_CHUNK_WORDS]) for i in range(0, len(words), _TEXT_CHUNK_WORDS)]
    # Rejoin with the separating space kept on the earlier chunk, so the chunks concatenate to `text`.
    return [chunk + " " for chunk in chunks[:-1]] + chunks[-1:]


def _split_chars(text: str) -> list[str]:
    return [text[i : i + _JSON_CHUNK_CHARS] for i in range(0, len(text), _JSON_CHUNK_CHARS)]


def _ping() -> bytes:
    return encode_sse("ping", {"type": "ping"})


def stream_message(message: Mapping[str, Any]) -> list[bytes]:
    """Return the full SSE event sequence that streams `message`, in the order the API sends it."""
    events = [_message_start(message)]
    content: Sequence[Mapping[str, Any]] = message["content"]
    for index, block in enumerate(content):
        block_events = _block_events(index, block)
        if index == 0:
            # The API sends its first ping right after the first content_block_start.
            block_events.insert(1, _ping())
        events.extend(block_events)

    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    usage = {"output_tokens": message["usage"]["output_tokens"]}
    events.append(encode_sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(encode_sse("message_stop", {"type": "message_stop"}))
    return events


def truncated_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """Return `message` as if `max_tokens` stopped it inside its last block.

    A tool_use input cut mid-JSON cannot be parsed, so the non-streaming answer carries `{}` as that
    input; `truncated_stream` sends the cut JSON itself.
    """
    content = [dict(block) for block in message["content"]]
    last = content[-1]
    if last["type"] == "tool_use":
        last["input"] = {}
    else:
        last["text"] = last["text"][: max(1, len(last["text"]) // 2)]
    return {**message, "content": content, "stop_reason": "max_tokens"}


def truncated_stream(message: Mapping[str, Any]) -> list[bytes]:
    """Return the stream of `message` cut by `max_tokens` halfway through its last block."""
    content: Sequence[Mapping[str, Any]] = message["content"]
    events = [_message_start(message), _ping()]
    for index, block in enumerate(content[:-1]):
        events.extend(_block_events(index, block))

    index, last = len(content) - 1, content[-1]
    delta_type = "content_block_delta"
    if last["type"] == "tool_use":
        events.append(_block_start(index, {**last, "input": {}}))
        serialized = json.dumps(last["input"], ensure_ascii=False, separators=(",", ":"))
        delta: dict[str, Any] = {"type": "input_json_delta", "partial_json": serialized[: len(serialized) // 2]}
    else:
        events.append(_block_start(index, {"type": "text", "text": ""}))
        delta = {"type": "text_delta", "text": last["text"][: max(1, len(last["text"]) // 2)]}
    events.append(encode_sse(delta_type, {"type": delta_type, "index": index, "delta": delta}))
    events.append(encode_sse("content_block_stop", {"type": "content_block_stop", "index": index}))

    stop = {"stop_reason": "max_tokens", "stop_sequence": None}
    usage = {"output_tokens": message["usage"]["output_tokens"]}
    events.append(encode_sse("message_delta", {"type": "message_delta", "delta": stop, "usage": usage}))
    events.append(encode_sse("message_stop", {"type": "message_stop"}))
    return events


def interrupted_stream(message: Mapping[str, Any], request_id: str) -> list[bytes]:
    """Return a stream that starts `message` and then fails with an `overloaded_error` event."""
    error = error_body("overloaded_error", "Overloaded", request_id)
    return [_message_start(message), _ping(), encode_sse("error", error)]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_limit_headers(
    *, request_id: str, now: datetime, tokens_used: int, exhausted_for_s: int | None = None
) -> dict[str, str]:
    """Build `request-id` and the `anthropic-ratelimit-*` headers.

    With `exhausted_for_s`, the request quota reads as used up until that many seconds from `now`.
    Otherwise one request and `tokens_used` tokens are counted against limits that reset within a minute.
    """
    if exhausted_for_s is not None:
        requests_remaining = 0
        requests_reset = now + timedelta(seconds=exhausted_for_s)
    else:
        requests_remaining = REQUESTS_LIMIT - 1
        requests_reset = now + timedelta(seconds=1)

    tokens_remaining = max(0, TOKENS_LIMIT - tokens_used)
    return {
        "request-id": request_id,
        "anthropic-ratelimit-requests-limit": str(REQUESTS_LIMIT),
        "anthropic-ratelimit-requests-remaining": str(requests_remaining),
        "anthropic-ratelimit-requests-reset": _rfc3339(requests_reset),
        "anthropic-ratelimit-tokens-limit": str(TOKENS_LIMIT),
        "anthropic-ratelimit-tokens-remaining": str(tokens_remaining),
        "anthropic-ratelimit-tokens-reset": _rfc3339(now + timedelta(seconds=1)),
    }
