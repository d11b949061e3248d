"""Classifying model API failures into retry-or-give-up decisions; pure, no network."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = [
    "ModelFailure",
    "classify_connection_error",
    "classify_status",
    "classify_stream_error",
    "not_before",
    "retry_delay",
]

_RESET_HEADERS = (
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
)


class ModelFailure(Exception):
    """A failed model call: its kind, the API's message, and whether and when retrying may help.

    `retry_after` holds the seconds the server asked us to wait, when it said so.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        super().__init__(f"{kind}: {message}")


def classify_status(status: int, headers: Mapping[str, str], message: str, now: datetime) -> ModelFailure:
    """Turn an HTTP error response of the Messages API into a ModelFailure.

    429, 529 and 5xx are transient; any other 4xx (400, 401, 403, 404, 413) would fail the same way
    again, so it is `model_rejected` and not retryable. See https://docs.anthropic.com/en/api/errors.
    """
    delay = retry_delay(headers, now)
    if status == 429:
        return ModelFailure("rate_limited", message or "API rate limit exceeded", True, delay, status)
    if status == 529 or "overloaded" in message.lower():
        return ModelFailure("overloaded", message or "the API is overloaded", True, delay, status)
    if status >= 500:
        return ModelFailure("upstream_error", message or f"the API answered {status}", True, delay, status)
    return ModelFailure("model_rejected", message or f"the API answered {status}", False, None, status)


def classify_stream_error(error_type: str, message: str) -> ModelFailure:
    """Turn an `error` event inside a 200 streaming response into a ModelFailure.

    The API reports overload this way mid-stream (`overloaded_error`); a stream error carries no
    retry headers, so the retry backoff alone decides the wait.
    """
    text = f"{message} ({error_type})" if message else error_type
    if error_type == "overloaded_error":
        return ModelFailure("overloaded", text, True)
    if error_type == "rate_limit_error":
        return ModelFailure("rate_limited", text, True)
    if error_type in ("api_error", "timeout_error"):
        return ModelFailure("upstream_error", text, True)
    return ModelFailure("model_rejected", text, False)


def classify_connection_error(detail: str) -> ModelFailure:
    """Treat a connection failure or timeout as a transient upstream error."""
    return ModelFailure("upstream_error", f"cannot reach the model API: {detail}", True, None, None)


def retry_delay(headers: Mapping[str, str], now: datetime) -> float | None:
    """Read how long the server asked us to wait, in seconds, or None when it did not say.

    Order: `retry-after-ms`, `retry-after` (seconds or an HTTP date), then the latest of the
    `anthropic-ratelimit-*-reset` times (RFC 3339).
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = _number(lowered.get("retry-after-ms"))
    if millis is not None:
        return max(millis / 1000.0, 0.0)

    retry_after = lowered.get("retry-after")
    if retry_after is not None:
        seconds = _number(retry_after)
        if seconds is not None:
            return max(seconds, 0.0)
        moment = _http_date(retry_after)
        if moment is not None:
            return max((moment - now).total_seconds(), 0.0)

    resets = [_rfc3339(lowered[name]) for name in _RESET_HEADERS if name in lowered]
    known = [moment for moment in resets if moment is not None]
    if known:
        return max(max((moment - now).total_seconds(), 0.0) for moment in known)
    return None


def not_before(now: datetime, delay: float | None) -> datetime:
    """Return the earliest time a retry may happen."""
    return now + timedelta(seconds=delay or 0.0)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def _http_date(text: str) -> datetime | None:
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def _rfc3339(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
