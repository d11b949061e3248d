"""The baseline of row 7: a bare Litestar route that checks the HMAC and appends the body to JetStream.

Run as `python -m services.bench.bare_webhook --port P` with TURNLOG_NATS_URL and TURNLOG_WEBHOOK_SECRET.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import uvicorn
from litestar import Litestar, Request, Response, post
from litestar.exceptions import NotAuthorizedException
from nats.js.api import StorageType, StreamConfig

__all__ = ["BARE_STREAM", "create_bare_app"]

BARE_STREAM = "BENCH_BARE"
BARE_SUBJECT = "bench.bare.webhook"


def create_bare_app(nats_url: str, secret: bytes) -> Litestar:
    """Build the app: one `POST /webhook` route, one NATS connection opened in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        connection = await nats.connect(nats_url)
        js = connection.jetstream()
        await js.add_stream(StreamConfig(name=BARE_STREAM, subjects=["bench.bare.>"], storage=StorageType.FILE))
        app.state.js = js
        try:
            yield
        finally:
            await connection.close()

    @post("/webhook", status_code=202)
    async def webhook(request: Request[Any, Any, Any]) -> Response[dict[str, int]]:
        raw = await request.body()
        expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        given = request.headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise NotAuthorizedException("missing or invalid X-Hub-Signature-256")
        ack = await request.app.state.js.publish(BARE_SUBJECT, raw)
        return Response({"seq": ack.seq}, status_code=202)

    return Litestar(route_handlers=[webhook], lifespan=[lifespan], openapi_config=None, logging_config=None)


def main() -> None:
    """Serve the bare app on 127.0.0.1 with the same uvicorn settings as `turnlog serve gateway`."""
    parser = argparse.ArgumentParser(prog="python -m services.bench.bare_webhook", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1.")
    options = parser.parse_args()
    secret = os.environ["TURNLOG_WEBHOOK_SECRET"].encode()
    app = create_bare_app(os.environ["TURNLOG_NATS_URL"], secret)
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
