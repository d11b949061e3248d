"""Request validation errors name the field the user sent, in the API's one error shape."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import Body, FromPath, QueryParameter
from litestar.testing import TestClient

from services.api.errors import error_handlers


class _Callback(msgspec.Struct, rename="camel"):
    url: str


class _Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    repository: str
    task: str
    max_turns: int | None = None
    callback: _Callback | None = None


@post("/jobs")
async def _create(data: Annotated[_Body, Body()]) -> dict[str, Any]:
    return {}


@get("/jobs/{job_id:str}/events")
async def _events(
    job_id: FromPath[str], after_sequence: Annotated[int, QueryParameter(name="afterSequence")] = 0
) -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def client() -> Any:
    with TestClient(Litestar([_create, _events], exception_handlers=error_handlers)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"repository": "a/b"},
            "task",
            "invalid request body: task is missing; add it (GET /schema lists the fields)",
        ),
        (
            {"repository": "a/b", "task": "x", "callback": {}},
            "callback.url",
            "invalid request body: callback.url is missing; add it (GET /schema lists the fields)",
        ),
        (
            {"repository": "a/b", "task": "x", "extra": 1},
            "extra",
            "invalid request body: unknown field extra; remove it (GET /schema lists the fields)",
        ),
        (
            {"repository": "a/b", "task": "x", "maxTurns": "ten"},
            "maxTurns",
            "invalid request body: maxTurns: Expected int | null, got str",
        ),
        ([1], None, "invalid request body: Expected object, got array; send a JSON object"),
    ],
)
def test_body_errors_name_field(client: Any, body: Any, field: str | None, message: str) -> None:
    response = client.post("/jobs", json=body)

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "message": message, "field": field}


def test_query_error_names_url_parameter(client: Any) -> None:
    response = client.get("/jobs/abc/events", params={"afterSequence": "x"})

    assert response.status_code == 400
    assert response.json()["field"] == "afterSequence"
    assert response.json()["message"].startswith("invalid query parameter afterSequence: ")
