"""The Litestar application factory for the API, the gateway, or both on one port."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.enums import OpenAPIMediaType
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin

from services.api.diff import job_diff
from services.api.errors import ERROR_RESPONSES, error_handlers
from services.api.metrics import metrics
from services.api.replay import REPLAY_ROUTES
from services.api.routes import API_ROUTES
from services.api.stats import checkpoint_stats
from services.common.runtime import Runtime, open_runtime
from services.common.settings import Settings
from services.gateway.routes import GATEWAY_ROUTES
from services.retention.routes import cleanup

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_OPEN_PATHS = frozenset({"/webhook", "/health", "/ready"})


def create_app(
    settings: Settings, *, runtime: Runtime | None = None, api: bool = True, gateway: bool = True
) -> Litestar:
    """Build the app; without a `runtime` it connects to NATS in its lifespan and closes it on exit."""
    route_handlers: list[Any] = []
    if api:
        route_handlers.extend([*API_ROUTES, job_diff, checkpoint_stats, cleanup, *REPLAY_ROUTES, metrics])
    if gateway:
        route_handlers.extend(GATEWAY_ROUTES)

    for handler in route_handlers:
        _document_errors(handler)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or await open_runtime(settings, name="turnlog-api")
        app.state.settings = settings
        if settings.webhook_secret is None and gateway:
            log.warning("TURNLOG_WEBHOOK_SECRET is not set: unsigned webhook deliveries are accepted")
        try:
            yield
        finally:
            if owned:
                await app.state.runtime.close()

    return Litestar(
        route_handlers=route_handlers,
        lifespan=[lifespan],
        exception_handlers=error_handlers,
        guards=[_bearer_guard(settings)],
        openapi_config=OpenAPIConfig(
            title="turnlog", version="0.1.0", path="/schema", render_plugins=[_OpenAPIDocument()]
        ),
        debug=False,
        logging_config=None,
    )


class _OpenAPIDocument(OpenAPIRenderPlugin):
    """Serves the OpenAPI document as JSON at `/schema` and `/schema/openapi.json`.

    Litestar's default response at `/schema` is an HTML viewer that loads its script from a CDN,
    which shows a blank page offline. The interface promises the document itself there.
    """

    def __init__(self) -> None:
        super().__init__(path=["/", "/openapi.json"], media_type=OpenAPIMediaType.OPENAPI_JSON)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """Return the document as JSON bytes."""
        return self.render_json(request, openapi_schema)


def _bearer_guard(settings: Settings) -> Any:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if settings.api_token is None or connection.url.path in _OPEN_PATHS:
            return
        expected = f"Bearer {settings.api_token.get_secret_value()}"
        given = connection.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise NotAuthorizedException("missing or wrong bearer token; set TURNLOG_API_TOKEN")

    return guard


def _document_errors(handler: Any) -> None:
    # Every route returns errors in one shape, so document it wherever a route does not list its own.
    documented = dict(getattr(handler, "responses", None) or {})
    for status, spec in ERROR_RESPONSES.items():
        documented.setdefault(status, spec)
    handler.responses = documented
