"""Reading a Messages API conversation: the turn number, past tool calls and what their results contain.

Tool results are free text written by the runner, so the parsers here accept the common layouts.
Listings may have one path per line, bulleted, `./`-prefixed or ending in `/`. Search results may be
grep-style `path:line: text` hits or hits grouped under a path line. File contents may come with or
without a line-number gutter (`12\\tcode`, `12: code`, `12 | code`, `12→code`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolCall", "file_text", "python_paths", "search_hits", "tool_calls", "turn_number"]

ERROR_MARKER = "[error]"

_PYTHON_PATH = re.compile(r"(?<![\w./-])(?:\./)?((?:[\w.-]+/)*[\w-][\w.-]*\.py)(?![\w.])")
_GUTTER = re.compile(r"^\s*(\d+)(?:\t|→|\s?[|│:]\s?)(.*)$")


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """One `tool_use` block of an assistant message, with its `tool_result` when the request has one."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    result: str | None = None
    is_error: bool = False

    @property
    def succeeded(self) -> bool:
        """Whether the call has a result that is not an error."""
        return self.result is not None and not self.is_error


def turn_number(messages: object) -> int:
    """Return the turn of a request: the number of assistant messages plus one."""
    if not isinstance(messages, Sequence):
        return 1
    assistants = [message for message in messages if _role(message) == "assistant"]
    return len(assistants) + 1


def tool_calls(messages: object) -> list[ToolCall]:
    """List every tool call of the conversation in order, paired with its result from the next message."""
    if not isinstance(messages, Sequence):
        return []

    calls: list[ToolCall] = []
    for index, message in enumerate(messages):
        if _role(message) != "assistant":
            continue
        following = messages[index + 1] if index + 1 < len(messages) else None
        results = _tool_results(following)
        for block in _blocks(message):
            if block.get("type") != "tool_use":
                continue
            tool_input = block.get("input")
            result_block = results.get(str(block.get("id", "")))
            text = _result_text(result_block) if result_block is not None else None
            calls.append(
                ToolCall(
                    name=str(block.get("name", "")),
                    input=tool_input if isinstance(tool_input, Mapping) else {},
                    result=text,
                    is_error=_is_error(result_block, text),
                )
            )
    return calls


def _role(message: object) -> object:
    return message.get("role") if isinstance(message, Mapping) else None


def _blocks(message: object) -> list[Mapping[str, Any]]:
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, Mapping)]


def _tool_results(message: object) -> dict[str, Mapping[str, Any]]:
    if _role(message) != "user":
        return {}
    return {
        str(block.get("tool_use_id", "")): block for block in _blocks(message) if block.get("type") == "tool_result"
    }


def _result_text(block: Mapping[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [str(part.get("text", "")) for part in content if isinstance(part, Mapping)]
        return "\n".join(texts)
    return ""


def _is_error(block: Mapping[str, Any] | None, text: str | None) -> bool:
    if block is None or text is None:
        return False
    return block.get("is_error") is True or text.lstrip().startswith(ERROR_MARKER)


def python_paths(text: str) -> list[str]:
    """Return the distinct `.py` paths mentioned in `text`, in order, without a leading `./`."""
    paths: list[str] = []
    for match in _PYTHON_PATH.finditer(text):
        path = match.group(1)
        if path not in paths:
            paths.append(path)
    return paths


def search_hits(text: str) -> dict[str, int]:
    """Count search hits per `.py` file, in the order the files first appear.

    A line that contains nothing but a path starts a group, and the indented lines after it count for that
    path. Any other line that names a path counts as one hit for the first path on it.
    """
    hits: dict[str, int] = {}
    group: str | None = None
    for line in text.splitlines():
        paths = python_paths(line)
        stripped = line.strip().rstrip(":").removeprefix("./")
        if paths and stripped == paths[0]:
            group = paths[0]
            hits.setdefault(group, 0)
        elif paths:
            hits[paths[0]] = hits.get(paths[0], 0) + 1
        elif group is not None and stripped:
            hits[group] += 1
    return hits


def file_text(result: str) -> str:
    """Return the file content of a `read_file` result, without a line-number gutter if every line has one.

    The gutter is only removed when the numbers run consecutively, so code lines that happen to
    start with digits stay untouched.
    """
    lines = result.split("\n")
    body = lines[:-1] if lines and lines[-1] == "" else lines
    matches = [_GUTTER.match(line) for line in body]
    if not body or any(match is None for match in matches):
        return result

    numbers = [int(match.group(1)) for match in matches if match is not None]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return result

    stripped = [match.group(2) for match in matches if match is not None]
    return "\n".join(stripped) + ("\n" if len(body) < len(lines) else "")
