"""The API's one error shape: `{"error": code, "message": sentence, "field": name-or-null, ...}`."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

__all__ = ["ApiError", "error_handlers"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: HTTP status, a stable code, a message saying what to do, and optional details."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None, **extra: Any) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error answer."""
        return {"error": self.code, "message": self.message, "field": self.field, **self.extra}


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return Response(exc.body(), status_code=exc.status)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    detail = exc.extra if isinstance(exc.extra, list) else []
    field = None
    if detail and isinstance(detail[0], dict):
        field = detail[0].get("key")
    message = str(exc.detail)
    if detail and isinstance(detail[0], dict) and detail[0].get("message"):
        message = f"{detail[0]['message']}"
    return Response(
        {"error": "invalid_request", "message": f"invalid request body: {message}", "field": field},
        status_code=400,
    )


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return Response({"error": code, "message": str(exc.detail), "field": None}, status_code=exc.status_code)


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
