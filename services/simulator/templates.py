"""Source of the `errors` module that the scripted agent writes into the repository it works on."""

from __future__ import annotations

__all__ = ["ERRORS_MODULE_RAISING", "ERRORS_MODULE_RESPONSES"]

_HEADER = '''"""Errors reported to API clients, and a decorator that applies them to handlers."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

logger = logging.getLogger(__name__)

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


class ApiError(Exception):
    """An error that reaches the client as an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def to_api_error(handler_name: str, exc: Exception) -> ApiError:
    """Map an exception to the ApiError a client sees; others are logged as a 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, KeyError):
        missing = exc.args[0] if exc.args else "unknown key"
        return ApiError(404, f"not found: {missing}")
    if isinstance(exc, (TypeError, ValueError)):
        return ApiError(400, f"invalid request: {exc}")
    logger.error("unhandled error in %s", handler_name, exc_info=exc)
    return ApiError(500, "internal server error")
'''

# For handlers that return `(status, body)` tuples: the decorator returns the error as such a tuple.
ERRORS_MODULE_RESPONSES = (
    _HEADER
    + '''

def handle_errors(handler: HandlerT) -> HandlerT:
    """Make `handler` return `(status, {"error": message})` instead of raising.

    ApiError keeps its status, KeyError becomes 404, ValueError and TypeError
    become 400, and any other exception is logged and becomes 500.
    """
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            except Exception as exc:
                error = to_api_error(handler.__name__, exc)
                return error.status, {"error": error.message}

        return cast(HandlerT, async_wrapper)

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Exception as exc:
            error = to_api_error(handler.__name__, exc)
            return error.status, {"error": error.message}

    return cast(HandlerT, wrapper)
'''
)

# For any other code: the decorator re-raises every failure as an ApiError with a status.
ERRORS_MODULE_RAISING = (
    _HEADER
    + '''

def handle_errors(handler: HandlerT) -> HandlerT:
    """Make `handler` raise only ApiError, chained to the original exception.

    KeyError becomes 404, ValueError and TypeError become 400, and any other
    exception is logged and becomes 500.
    """
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            except ApiError:
                raise
            except Exception as exc:
                raise to_api_error(handler.__name__, exc) from exc

        return cast(HandlerT, async_wrapper)

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except ApiError:
            raise
        except Exception as exc:
            raise to_api_error(handler.__name__, exc) from exc

    return cast(HandlerT, wrapper)
'''
)
