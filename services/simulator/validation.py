"""Request checks that mirror the Messages API's 400 `invalid_request_error` responses.

Messages copy the API's wording where it is known from its error responses (`Field required`, the
`tool_use`/`tool_result` pairing, whitespace in text blocks). The check that `tool_result` blocks come
first in their message uses the simulator's own wording.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["InvalidRequestError", "validate_request"]

_ROLES = ("user", "assistant")
_UNTOUCHED_BLOCKS = frozenset({"thinking", "redacted_thinking"})


class InvalidRequestError(ValueError):
    """A request the Messages API would reject with 400 `invalid_request_error`."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def validate_request(body: object) -> None:
    """Raise InvalidRequestError with the API's message for the first problem found in `body`."""
    if not isinstance(body, Mapping):
        raise InvalidRequestError(f"Request body must be a JSON object, got {type(body).__name__}.")

    _check_model_and_max_tokens(body)
    _check_tools(body.get("tools"))
    messages = _check_message_list(body)
    for index, message in enumerate(messages):
        _check_message(index, message, is_last=index == len(messages) - 1)
    _check_tool_pairing(messages)
    _check_final_assistant(messages[-1])


def _check_model_and_max_tokens(body: Mapping[str, Any]) -> None:
    if "model" not in body:
        raise InvalidRequestError("model: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise InvalidRequestError("model: Input should be a non-empty string")

    if "max_tokens" not in body:
        raise InvalidRequestError("max_tokens: Field required")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise InvalidRequestError("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise InvalidRequestError("max_tokens: Input should be greater than or equal to 1")

    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequestError("stream: Input should be a valid boolean")


def _check_tools(tools: object) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequestError("tools: Input should be a valid list")

    names: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(f"tools.{index}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"tools.{index}.name: Field required")
        if "type" not in tool and not isinstance(tool.get("input_schema"), Mapping):
            raise InvalidRequestError(f"tools.{index}.input_schema: Field required")
        if name in names:
            raise InvalidRequestError(f"tools: Tool names must be unique, but {name!r} appears twice.")
        names.add(name)


def _check_message_list(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "messages" not in body:
        raise InvalidRequestError("messages: Field required")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise InvalidRequestError("messages: Input should be a valid list")
    if not messages:
        raise InvalidRequestError("messages: at least one message is required")

    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"messages.{index}: Input should be a valid dictionary")
        if message.get("role") not in _ROLES:
            raise InvalidRequestError(f"messages.{index}.role: Input should be 'user' or 'assistant'")
    if messages[0]["role"] != "user":
        raise InvalidRequestError('messages: first message must use the "user" role')
    return messages


def _check_message(index: int, message: Mapping[str, Any], *, is_last: bool) -> None:
    content = message.get("content")
    final_assistant = is_last and message["role"] == "assistant"
    if isinstance(content, str):
        if not content and not final_assistant:
            raise _empty_content_error(index)
        if content and not content.strip():
            raise InvalidRequestError("messages: text content blocks must contain non-whitespace text")
        return

    if not isinstance(content, list):
        raise InvalidRequestError(f"messages.{index}.content: Input should be a valid string or list")
    if not content and not final_assistant:
        raise _empty_content_error(index)

    for block_index, block in enumerate(content):
        where = f"messages.{index}.content.{block_index}"
        if not isinstance(block, Mapping):
            raise InvalidRequestError(f"{where}: Input should be a valid dictionary")
        block_type = block.get("type")
        if not isinstance(block_type, str):
            raise InvalidRequestError(f"{where}.type: Field required")
        if block_type == "text":
            _check_text_block(where, block)
        elif block_type == "tool_use":
            _check_tool_use_block(where, block, message["role"])
        elif block_type == "tool_result":
            _check_tool_result_block(where, block, message["role"])


def _empty_content_error(index: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"messages.{index}: all messages must have non-empty content except for the optional final assistant message"
    )


def _check_text_block(where: str, block: Mapping[str, Any]) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequestError(f"{where}.text: Field required")
    if not text.strip():
        raise InvalidRequestError("messages: text content blocks must contain non-whitespace text")


def _check_tool_use_block(where: str, block: Mapping[str, Any], role: str) -> None:
    if role != "assistant":
        raise InvalidRequestError(f"{where}: `tool_use` blocks can only be in `assistant` messages")
    for name in ("id", "name"):
        if not isinstance(block.get(name), str) or not block[name]:
            raise InvalidRequestError(f"{where}.{name}: Field required")
    if not isinstance(block.get("input"), Mapping):
        raise InvalidRequestError(f"{where}.input: Input should be a valid dictionary")


def _check_tool_result_block(where: str, block: Mapping[str, Any], role: str) -> None:
    if role != "user":
        raise InvalidRequestError(f"{where}: `tool_result` blocks can only be in `user` messages")
    if not isinstance(block.get("tool_use_id"), str) or not block["tool_use_id"]:
        raise InvalidRequestError(f"{where}.tool_use_id: Field required")
    content = block.get("content")
    if content is not None and not isinstance(content, str | list):
        raise InvalidRequestError(f"{where}.content: Input should be a valid string or list")
    if "is_error" in block and not isinstance(block["is_error"], bool):
        raise InvalidRequestError(f"{where}.is_error: Input should be a valid boolean")


def _blocks(message: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _check_tool_pairing(messages: list[Mapping[str, Any]]) -> None:
    # Results are checked first, so a misplaced `tool_result` gets its own message rather than the
    # generic one about missing results.
    for index, message in enumerate(messages):
        if message["role"] == "user":
            _check_results_answer_previous(index, message, messages[index - 1] if index > 0 else None)

    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        tool_use_ids = [str(block["id"]) for block in _blocks(message) if block.get("type") == "tool_use"]
        if not tool_use_ids:
            continue
        # NOTE: a final assistant message with `tool_use` is rejected like a missing result. How the
        # real API responds to that request shape has not been checked.
        following = messages[index + 1] if index + 1 < len(messages) else None
        answered = _leading_result_ids(following) if following is not None else set()
        missing = [tool_use_id for tool_use_id in tool_use_ids if tool_use_id not in answered]
        if missing:
            raise InvalidRequestError(
                f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` "
                "block in the next message."
            )


def _leading_result_ids(message: Mapping[str, Any]) -> set[str]:
    if message["role"] != "user":
        return set()
    ids: set[str] = set()
    for block in _blocks(message):
        if block.get("type") != "tool_result":
            break
        ids.add(str(block["tool_use_id"]))
    return ids


def _check_results_answer_previous(index: int, message: Mapping[str, Any], previous: Mapping[str, Any] | None) -> None:
    offered: set[str] = set()
    if previous is not None and previous["role"] == "assistant":
        offered = {str(block["id"]) for block in _blocks(previous) if block.get("type") == "tool_use"}

    seen_other_block: str | None = None
    for block_index, block in enumerate(_blocks(message)):
        where = f"messages.{index}.content.{block_index}"
        if block.get("type") != "tool_result":
            seen_other_block = seen_other_block or str(block.get("type"))
            continue
        tool_use_id = str(block["tool_use_id"])
        if tool_use_id not in offered:
            raise InvalidRequestError(
                f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_use_id}. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            )
        if seen_other_block is not None:
            raise InvalidRequestError(
                f"{where}: `tool_result` block found after a `{seen_other_block}` block. In a user message, "
                "every `tool_result` block must come before any other content."
            )


def _check_final_assistant(message: Mapping[str, Any]) -> None:
    if message["role"] != "assistant":
        return
    content = message.get("content")
    if isinstance(content, str):
        last_text = content
    else:
        blocks = [block for block in _blocks(message) if block.get("type") not in _UNTOUCHED_BLOCKS]
        last_text = str(blocks[-1].get("text", "")) if blocks and blocks[-1].get("type") == "text" else ""
    if last_text != last_text.rstrip():
        raise InvalidRequestError("messages: final assistant content cannot end with trailing whitespace")
