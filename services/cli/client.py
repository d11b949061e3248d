"""The CLI's HTTP client for the REST API, turning transport failures into one-sentence errors."""

from __future__ import annotations

import os
from typing import Any

import httpx

__all__ = ["ApiClient", "CliError"]

DEFAULT_API_URL = "http://localhost:3000"


class CliError(Exception):
    """An error to print as one sentence on stderr, with the process exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.message = message
        self.exit_code = exit_code
        super().__init__(message)


def _checked_url(url: str) -> str:
    try:
        parsed = httpx.URL(url) if "://" in url else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise CliError(f"invalid TURNLOG_API_URL {url!r}: use http://host:port, such as {DEFAULT_API_URL}", 2)
    return url.rstrip("/")


class ApiClient:
    """Calls the API at TURNLOG_API_URL with TURNLOG_API_TOKEN as a bearer token when set."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = _checked_url(base_url or os.environ.get("TURNLOG_API_URL") or DEFAULT_API_URL)
        token = token or os.environ.get("TURNLOG_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise CliError with exit code 3 when the API cannot be reached."""
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise CliError(f"cannot reach the API at {self.base_url}: is `turnlog up` running?", exit_code=3) from exc
        except httpx.TimeoutException as exc:
            raise CliError(f"the API at {self.base_url} did not respond in time; retry shortly", 3) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body; raise CliError with the API's message on errors."""
        response = self.request(method, path, **kwargs)
        self.raise_for_answer(response)
        return response.json()

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        """Open a streaming request (a context manager yielding the response); no read timeout."""
        return self._http.stream(method, path, timeout=httpx.Timeout(10.0, read=None), **kwargs)

    def raise_for_answer(self, response: httpx.Response) -> None:
        """Raise CliError with the API's one-sentence message for an error answer."""
        if response.status_code >= 400:
            raise CliError(_error_message(response), exit_code=3 if response.status_code in (502, 503, 504) else 1)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the API answered {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return f"the API answered {response.status_code}"
