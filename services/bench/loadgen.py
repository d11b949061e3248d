"""A small HTTP/1.1 keep-alive load generator on asyncio streams, bounded in requests and in time.

It writes pre-built requests and reads `Content-Length` responses, nothing more, so that the client
costs little CPU next to the servers it measures on the same cores.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoadResult", "run_load"]


@dataclass(slots=True)
class LoadResult:
    """Latencies of completed requests in milliseconds, status counts and the wall time they took."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Return completed requests per second."""
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0


class ResponseError(RuntimeError):
    """A response the load generator cannot read: no status line or no Content-Length."""


async def run_load(
    host: str,
    port: int,
    build_request: Callable[[int], bytes],
    *,
    connections: int,
    seconds: float,
    max_requests: int,
    first_index: int = 0,
) -> LoadResult:
    """Send requests `build_request(i)` over `connections` keep-alive connections for `seconds` at most."""
    result = LoadResult()
    next_index = first_index
    last_index = first_index + max_requests
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline and next_index < last_index:
                index = next_index
                next_index += 1
                request = build_request(index)
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[status] += 1
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ResponseError(f"malformed status line {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ResponseError(f"response {lines[0]!r} has no Content-Length; the load generator needs one")
    await reader.readexactly(length)
    return int(parts[1])
