"""The model client: one Messages API call through the `anthropic` SDK, keeping the answer's raw bytes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anthropic
import msgspec

from contracts.events import Usage
from services.common.clock import now
from services.runner.failures import ModelFailure, classify_connection_error, classify_status

__all__ = ["ModelClient", "ModelReply"]


class _Envelope(msgspec.Struct):
    content: msgspec.Raw
    stop_reason: str | None = None
    model: str = ""
    usage: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class ModelReply:
    """The model's answer: the raw `content` bytes as received, decoded blocks and accounting."""

    raw_content: bytes
    content: list[dict[str, Any]]
    stop_reason: str
    model: str
    usage: Usage
    elapsed_ms: float


class ModelClient:
    """Calls the Messages API with the SDK's own retries off, so the runner decides every retry."""

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
        """Send one request; raise ModelFailure, classified, on any error answer or connection failure."""
        started = time.perf_counter()
        try:
            response = await self._client.messages.with_raw_response.create(
                model=model,
                max_tokens=max_tokens,
                system=system,
                tools=tools,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
            )
            body = await response.read()
        except anthropic.APIStatusError as exc:
            headers = dict(exc.response.headers.items())
            raise classify_status(exc.status_code, headers, _error_message(exc), now()) from exc
        except (anthropic.APIConnectionError, anthropic.APITimeoutError) as exc:
            raise classify_connection_error(str(exc) or type(exc).__name__) from exc

        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            envelope = msgspec.json.decode(body, type=_Envelope)
            blocks = msgspec.json.decode(envelope.content)
        except msgspec.DecodeError as exc:
            raise ModelFailure("upstream_error", f"unreadable model answer: {exc}", True) from exc
        if not isinstance(blocks, list):
            raise ModelFailure("upstream_error", "model answer content is not a list of blocks", True)
        return ModelReply(
            raw_content=bytes(envelope.content),
            content=blocks,
            stop_reason=envelope.stop_reason or "end_turn",
            model=envelope.model,
            usage=_usage(envelope.usage),
            elapsed_ms=elapsed_ms,
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
