"""Litestar app of the model simulator: `POST /v1/messages` plus the `/_sim/requests` log for tests."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import HTTPException
from litestar.response import Stream

from services.simulator.faults import FaultInjector, FaultSpec
from services.simulator.protocol import (
    REQUESTS_LIMIT,
    build_message,
    error_body,
    error_type_for_status,
    interrupted_stream,
    new_request_id,
    rate_limit_headers,
    stream_message,
    truncated_message,
    truncated_stream,
)
from services.simulator.request_log import RequestLog
from services.simulator.script import next_step
from services.simulator.settings import SimulatorSettings
from services.simulator.transcript import turn_number
from services.simulator.validation import InvalidRequestError, validate_request

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
SSE_MEDIA_TYPE = "text/event-stream"
# The real API's `retry-after` depends on the limit that was hit. One hour keeps a job waiting long
# enough that the rate-limit scenario has to resume it.
DEFAULT_RATE_LIMIT_RETRY_AFTER_S = 3600

_FAULT_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _json_response(value: object, status_code: int, headers: dict[str, str]) -> Response[bytes]:
    return Response(content=_json_bytes(value), status_code=status_code, media_type=JSON_MEDIA_TYPE, headers=headers)


class _Simulator:
    """The state one app instance keeps: pending faults and the request log."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.faults = FaultInjector(settings.fault_specs())
        self.log = RequestLog(settings.max_logged_requests)

    async def answer(self, raw_body: bytes) -> Response[Any]:
        request_id, now = new_request_id(), datetime.now(UTC)
        try:
            body = json.loads(raw_body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.log.append(raw_body.decode(errors="replace"))
            logger.info("rejected request %s: body is not valid JSON: %s", request_id, exc)
            detail = f"Request body is not valid JSON: {exc}. Send the request as a JSON object."
            return self._error(400, detail, request_id, now)
        self.log.append(body)

        if self.settings.latency_ms > 0:
            await asyncio.sleep(self.settings.latency_ms / 1000)

        try:
            validate_request(body)
        except InvalidRequestError as exc:
            logger.info("rejected request %s: %s", request_id, exc.message)
            return self._error(400, exc.message, request_id, now)

        turn = turn_number(body["messages"])
        streaming = body.get("stream") is True
        fault = self.faults.take(turn)
        in_answer_fault = fault is not None and (
            fault.kind == "max-tokens" or (fault.kind == "overloaded-stream" and streaming)
        )
        if fault is not None and not in_answer_fault:
            return self._fault(fault, turn, request_id, now)

        try:
            message = build_message(body, next_step(body), turn)
        except Exception as exc:
            # The script is meant to cope with any valid conversation. Should it fail anyway, the
            # caller sees an API error instead of a dropped connection.
            logger.exception("script failed on turn %d of request %s", turn, request_id)
            return self._error(500, f"The simulator script failed on turn {turn}: {exc!r}", request_id, now)

        tokens_used = message["usage"]["input_tokens"] + message["usage"]["output_tokens"]
        headers = rate_limit_headers(request_id=request_id, now=now, tokens_used=tokens_used)
        truncated = fault is not None and fault.kind == "max-tokens"
        if truncated:
            logger.info("injecting fault max_tokens@%d into request %s", turn, request_id)
        if not streaming:
            return _json_response(truncated_message(message) if truncated else message, 200, headers)

        if truncated:
            events = truncated_stream(message)
        elif fault is not None:
            logger.info("injecting fault overloaded-stream@%d into request %s", turn, request_id)
            events = interrupted_stream(message, request_id)
        else:
            events = stream_message(message)
        return Stream(events, status_code=200, media_type=SSE_MEDIA_TYPE, headers=headers)

    def _fault(self, fault: FaultSpec, turn: int, request_id: str, now: datetime) -> Response[bytes]:
        error_type = error_type_for_status(fault.status)
        retry_after = fault.retry_after_s
        if retry_after is None and fault.status == 429:
            retry_after = DEFAULT_RATE_LIMIT_RETRY_AFTER_S

        if error_type == "rate_limit_error":
            base = f"This request would exceed the rate limit of {REQUESTS_LIMIT} requests per minute."
        else:
            base = _FAULT_MESSAGES.get(error_type, f"Simulated HTTP {fault.status} error")
        entry = "overloaded-stream" if fault.kind == "overloaded-stream" else str(fault.status)
        message = f"{base} (fault {entry}@{turn} injected by the turnlog simulator)"
        logger.info("injecting fault %s@%d into request %s", entry, turn, request_id)

        exhausted_for_s = retry_after if fault.status == 429 else None
        headers = rate_limit_headers(request_id=request_id, now=now, tokens_used=0, exhausted_for_s=exhausted_for_s)
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return _json_response(error_body(error_type, message, request_id), fault.status, headers)

    def _error(self, status: int, message: str, request_id: str, now: datetime) -> Response[bytes]:
        headers = rate_limit_headers(request_id=request_id, now=now, tokens_used=0)
        body = error_body(error_type_for_status(status), message, request_id)
        return _json_response(body, status, headers)


def _http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Answer routing errors (unknown path, wrong method) in the API's error shape."""
    request_id = new_request_id()
    logger.info("%s %s failed with HTTP %d: %s", request.method, request.url.path, exc.status_code, exc.detail)
    body = error_body(error_type_for_status(exc.status_code), str(exc.detail), request_id)
    return _json_response(body, exc.status_code, {"request-id": request_id})


def create_app(settings: SimulatorSettings) -> Litestar:
    """Build the simulator app; each app keeps its own fault state and request log."""
    simulator = _Simulator(settings)

    @post("/v1/messages", status_code=200)
    async def create_message(request: Request[Any, Any, Any]) -> Response[Any]:
        return await simulator.answer(await request.body())

    @get("/_sim/requests")
    async def list_requests() -> Response[bytes]:
        return _json_response(simulator.log.entries(), 200, {})

    @delete("/_sim/requests", status_code=200)
    async def clear_requests() -> Response[bytes]:
        return _json_response({"cleared": simulator.log.clear()}, 200, {})

    return Litestar(
        route_handlers=[create_message, list_requests, clear_requests],
        exception_handlers={HTTPException: _http_exception_handler},
        openapi_config=None,
        # The hosting process owns logging; Litestar's default config would replace its format.
        logging_config=None,
    )
