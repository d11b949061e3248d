"""The model client: one streamed Messages API call through the `anthropic` SDK, assembled block by block."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import msgspec

from contracts.events import Usage
from services.common.clock import now
from services.runner.failures import classify_connection_error, classify_status
from services.runner.streaming import SseParser, StreamAssembler

__all__ = ["ModelClient", "ModelReply"]


@dataclass(frozen=True, slots=True)
class ModelReply:
    """The model's response: the encoded `content` array, its decoded blocks and token usage."""

    raw_content: bytes
    content: list[dict[str, Any]]
    stop_reason: str
    model: str
    usage: Usage
    elapsed_ms: float
    truncated_tool_input: bool = False
    """True when `max_tokens` cut a tool_use input mid-JSON; such a tool call must never run."""


class ModelClient:
    """Calls the Messages API with the SDK's own retries off, so the runner decides every retry.

    Every call streams (`stream=true`): long responses keep the connection busy instead of idle, and an
    overload that the API reports inside a 200 stream is detected like a 529.
    """

    def __init__(self, *, api_key: str, base_url: str | None, timeout: float) -> None:
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def create(
        self,
        *,
        model: str,
        max_tokens: int,
        system: str,
        tools: list[dict[str, Any]],
        messages: list[dict[str, Any]],
    ) -> ModelReply:
        """Send one streamed request; raise ModelFailure, classified, on any error response or broken stream."""
        started = time.perf_counter()
        assembler = StreamAssembler()
        parser = SseParser()
        try:
            async with self._client.messages.with_streaming_response.create(
                model=model,
                max_tokens=max_tokens,
                system=system,
                tools=tools,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            ) as response:
                async for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        assembler.feed(*event)
                tail = parser.feed("")
                if tail is not None:
                    assembler.feed(*tail)
        except anthropic.APIStatusError as exc:
            headers = dict(exc.response.headers.items())
            raise classify_status(exc.status_code, headers, _error_message(exc), now()) from exc
        except (anthropic.APIConnectionError, anthropic.APITimeoutError, httpx.HTTPError) as exc:
            raise classify_connection_error(str(exc) or type(exc).__name__) from exc

        message = assembler.result()
        elapsed_ms = (time.perf_counter() - started) * 1000
        blocks = msgspec.json.decode(message.raw_content)
        return ModelReply(
            raw_content=message.raw_content,
            content=blocks,
            stop_reason=message.stop_reason,
            model=message.model,
            usage=_usage(message.usage),
            elapsed_ms=elapsed_ms,
            truncated_tool_input=message.truncated_tool_input,
        )


def _usage(raw: dict[str, Any]) -> Usage:
    def count(name: str) -> int:
        value = raw.get(name)
        return int(value) if isinstance(value, int | float) else 0

    return Usage(
        input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_read_input_tokens=count("cache_read_input_tokens"),
        cache_creation_input_tokens=count("cache_creation_input_tokens"),
    )


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            kind = error.get("type")
            message: str = error["message"]
            return f"{message} ({kind})" if isinstance(kind, str) else message
    return str(exc.message)
