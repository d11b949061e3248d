"""The API's one error shape: `{"error": code, "message": sentence, "field": name-or-null, ...}`."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from services.common.ids import is_job_id

__all__ = ["ERROR_RESPONSES", "ApiError", "ErrorBody", "check_job_id", "error_handlers"]

log = logging.getLogger(__name__)


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON body of every error response: a stable code, a sentence saying what to do, the field at fault."""

    error: str
    message: str
    field: str | None = None


class ApiError(Exception):
    """An error response: HTTP status, a stable code, a message saying what to do, and optional details."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None, **extra: Any) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error response."""
        return {"error": self.code, "message": self.message, "field": self.field, **self.extra}


def check_job_id(job_id: str) -> None:
    """Raise a 400 ApiError naming `jobId` when `job_id` cannot be a job id."""
    if not is_job_id(job_id):
        raise ApiError(
            400,
            "invalid_job_id",
            f"invalid job id {job_id!r}: expected 4-40 lowercase letters and digits",
            field="jobId",
        )


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return Response(exc.body(), status_code=exc.status)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    detail = exc.extra if isinstance(exc.extra, list) else []
    first = detail[0] if detail and isinstance(detail[0], dict) else {}
    field = first.get("key")
    reason = str(first.get("message") or exc.detail)
    if first.get("source") == "query" and isinstance(field, str):
        # Litestar reports the handler's Python name; users wrote the camelCase name in the URL.
        field = _camel(field)
        message = f"invalid query parameter {field}: {reason}; fix it in the URL"
    else:
        field, message = _body_error(field if isinstance(field, str) else None, reason)
    return Response({"error": "invalid_request", "message": message, "field": field}, status_code=400)


_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"contains unknown field `([^`]+)`")


def _body_error(key: str | None, reason: str) -> tuple[str | None, str]:
    """Name the body field a msgspec validation message is about; `data` is Litestar's key for the root."""
    parent = None if key in (None, "data") else key
    missing, unknown = _MISSING.search(reason), _UNKNOWN.search(reason)
    if missing is not None:
        field = ".".join(part for part in (parent, missing.group(1)) if part)
        return field, f"invalid request body: {field} is missing; add it (GET /schema lists the fields)"
    if unknown is not None:
        field = ".".join(part for part in (parent, unknown.group(1)) if part)
        return field, f"invalid request body: unknown field {field}; remove it (GET /schema lists the fields)"
    if parent is None:
        return None, f"invalid request body: {reason.replace('`', '')}; send a JSON object"
    return parent, f"invalid request body: {parent}: {reason.replace('`', '')}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    codes = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 400:
        message = f"invalid request body: {message}; send a JSON object"
    elif exc.status_code == 404:
        message = f"{message}; see GET /schema for the routes"
    return Response({"error": code, "message": message, "field": None}, status_code=exc.status_code)


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unexpected error", exc_info=exc)
    return Response(
        {
            "error": "unavailable",
            "message": f"the request failed: {type(exc).__name__}; retry shortly",
            "field": None,
        },
        status_code=503,
    )


error_handlers: dict[type[Exception] | int, Any] = {
    ApiError: _api_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(ErrorBody, description=description)


ERROR_RESPONSES: dict[int, ResponseSpec] = {
    400: _spec("Invalid input; `field` names it and `message` says how to fix it."),
    401: _spec("Missing or wrong bearer token while TURNLOG_API_TOKEN is set."),
    404: _spec("No such job."),
    409: _spec("The job's state does not allow the operation; `message` says why."),
    503: _spec("NATS is unreachable or too slow; retry shortly."),
}
"""Error answers every API route may give, documented in the OpenAPI schema."""
