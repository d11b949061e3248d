"""Row 7: signed `issue_comment` deliveries at concurrency 32 against turnlog's gateway and a bare route."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

from services.bench.harness import nats_server, wait_for
from services.bench.loadgen import LoadResult, run_load
from services.bench.processes import ServiceProcess, service_environment
from services.bench.stats import Row, summarize
from services.common.embedded import free_port

__all__ = ["measure_webhook"]

CONNECTIONS = 32
_SECRET = secrets.token_hex(16)
"""A fresh webhook secret per run, shared by the load generator and both servers."""
_WARMUP_REQUESTS = 300


def delivery(index: int, port: int) -> bytes:
    """Build a signed HTTP request carrying a `/code` comment; `index` is its comment id and issue number.

    A distinct issue per delivery keeps the per-issue flood guard from rejecting the load.
    """
    body = json.dumps(
        {
            "action": "created",
            "installation": {"id": 12345},
            "repository": {"owner": {"login": "my-org"}, "name": "my-repo", "default_branch": "main"},
            "issue": {"number": index},
            "comment": {"id": index, "body": "/code Add comprehensive error handling to the API"},
            "sender": {"login": "octocat", "type": "User"},
        }
    ).encode()
    signature = "sha256=" + hmac.new(_SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        "POST /webhook HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        "X-GitHub-Event: issue_comment\r\n"
        f"X-GitHub-Delivery: bench-{index}\r\n"
        f"X-Hub-Signature-256: {signature}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


async def measure_webhook(root: Path, *, quick: bool) -> Row:
    """Alternate rounds against both servers, so background noise hits both alike."""
    seconds = 5.0 if quick else 20.0
    rounds = 1 if quick else 2
    async with nats_server(root / "nats") as url:
        env = service_environment(TURNLOG_NATS_URL=url, TURNLOG_WEBHOOK_SECRET=_SECRET, TURNLOG_DATA_DIR=str(root))
        turnlog_port, bare_port = free_port(), free_port()
        servers = [
            ServiceProcess("gateway", env, root / "gateway.log", port=turnlog_port),
            ServiceProcess(
                "bare webhook",
                env,
                root / "bare.log",
                command=[sys.executable, "-m", "services.bench.bare_webhook", "--port", str(bare_port)],
            ),
        ]
        try:
            for port in (turnlog_port, bare_port):
                await wait_for(partial(_answers, port), timeout=60, what=f"a webhook server on port {port}")
            turnlog, bare = LoadResult(), LoadResult()
            index = 1
            for port, into in ((turnlog_port, turnlog), (bare_port, bare)):
                await _load(port, into, seconds=10, max_requests=_WARMUP_REQUESTS, first_index=index, keep=False)
                index += _WARMUP_REQUESTS
            for _ in range(rounds):
                for port, into in ((turnlog_port, turnlog), (bare_port, bare)):
                    index += await _load(port, into, seconds=seconds / rounds, first_index=index)
        finally:
            for server in servers:
                await server.stop()

    rejected = sum(count for status, count in turnlog.statuses.items() if status != 202)
    if rejected:
        raise RuntimeError(f"turnlog returned statuses {dict(turnlog.statuses)}; expected 202 for every delivery")
    latency = summarize(turnlog.latencies_ms)
    ratio = turnlog.throughput / bare.throughput
    return Row(
        number=7,
        measure="webhook ingest with HMAC, concurrency 32 (latency; ratio of req/s)",
        unit="ms",
        target="≥ 0.8×, p99 ≤ 20 ms",
        turnlog=latency,
        baseline=summarize(bare.latencies_ms),
        ratio=ratio,
        met=ratio >= 0.8 and latency.p99 <= 20,
        note=(
            f"turnlog {turnlog.throughput:,.0f} req/s ({len(turnlog.latencies_ms)} jobs created in "
            f"{turnlog.seconds:.1f} s) vs bare Litestar route {bare.throughput:,.0f} req/s, both one uvicorn "
            "process (`turnlog serve gateway` and services.bench.bare_webhook); asyncio keep-alive client."
        ),
        details={"turnlog_rps": round(turnlog.throughput), "bare_rps": round(bare.throughput)},
    )


def _delivery_to(port: int, index: int) -> bytes:
    return delivery(index, port)


async def _answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.post(f"http://127.0.0.1:{port}/webhook", content=b"{}")
    except httpx.HTTPError:
        return False
    return response.status_code < 500


async def _load(
    port: int, into: LoadResult, *, seconds: float, first_index: int, max_requests: int = 10**6, keep: bool = True
) -> int:
    build: Callable[[int], bytes] = partial(_delivery_to, port)
    result = await run_load(
        "127.0.0.1",
        port,
        build,
        connections=CONNECTIONS,
        seconds=seconds,
        max_requests=max_requests,
        first_index=first_index,
    )
    if keep:
        into.latencies_ms.extend(result.latencies_ms)
        into.statuses.update(result.statuses)
        into.seconds += result.seconds
    return len(result.latencies_ms) + CONNECTIONS
