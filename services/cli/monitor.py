"""`turnlog monitor`: follow a job's Server-Sent Events, reconnecting from the last event seen."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from services.cli.client import ApiClient, CliError

__all__ = ["follow", "parse_sse"]

RECONNECT_LIMIT_SECONDS = 120.0
"""How long `monitor` keeps reconnecting to an unreachable API before it gives up with exit code 3."""


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str | None, str]]:
    """Yield (id, event, data) for each Server-Sent Event in `lines`; comments are skipped."""
    event_id: str | None = None
    event: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            # A keepalive comment can arrive with an empty `data:` line: it carries no event.
            if data and any(part.strip() for part in data):
                yield event_id, event, "\n".join(data)
            event_id, event, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data and any(part.strip() for part in data):
        yield event_id, event, "\n".join(data)


def follow(
    client: ApiClient,
    job_id: str,
    on_event: Callable[[dict[str, Any]], int | None],
    *,
    on_reconnect: Callable[[str], None],
) -> int:
    """Stream the job's events into `on_event` until it returns an exit code.

    A dropped connection or a restarting API is retried with backoff; the stream resumes after the
    last event received (Last-Event-ID), so no event is shown twice or skipped.
    """
    last_id: str | None = None
    failing_since: float | None = None
    delay = 0.5
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        try:
            with client.stream("GET", f"/jobs/{job_id}/events/stream", headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    client.raise_for_answer(response)
                failing_since, delay = None, 0.5
                for event_id, _, data in parse_sse(response.iter_lines()):
                    item = json.loads(data)
                    last_id = event_id or last_id
                    code = on_event(item)
                    if code is not None:
                        return code
        except (httpx.TransportError, CliError) as exc:
            if isinstance(exc, CliError) and exc.exit_code != 3:
                raise
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > RECONNECT_LIMIT_SECONDS:
                raise CliError(
                    f"lost the connection to the API at {client.base_url} for over {RECONNECT_LIMIT_SECONDS:.0f}s; "
                    f"run `turnlog monitor {job_id}` again once it is back",
                    exit_code=3,
                ) from exc
            on_reconnect(f"connection lost; reconnecting in {delay:.1f}s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
