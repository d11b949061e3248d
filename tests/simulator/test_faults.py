"""Fault injection: the fault list syntax and the error responses the anthropic client receives."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx
import pytest

from services.simulator import FaultSpec, FaultSpecError, SimulatorSettings, parse_fault_specs, serve_simulator
from services.simulator.faults import FaultInjector

MODEL = "claude-sonnet-4-5"
TOOLS: list[anthropic.types.ToolParam] = [
    {"name": name, "description": f"The {name} tool.", "input_schema": {"type": "object"}}
    for name in ("list_files", "read_file", "search_code", "edit_file", "write_file", "finish")
]
EXPECTED_FORM = (
    "Expected STATUS@TURN, STATUS:RETRY_AFTER_SECONDS@TURN, overloaded-stream@TURN or max_tokens@TURN "
    "(for example 429@6, 429:1@6, overloaded-stream@3, max_tokens@4), with STATUS between 400 and 599 "
    "and TURN >= 1."
)


def conversation_for_turn(turn: int) -> list[Any]:
    """Build a valid conversation for `turn`, made of turn - 1 tool calls with their results."""
    messages: list[Any] = [{"role": "user", "content": "Add error handling to the API."}]
    for index in range(turn - 1):
        tool_use_id = f"toolu_test{index:02d}"
        tool_use = {"type": "tool_use", "id": tool_use_id, "name": "list_files", "input": {"path": "."}}
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Listing."}, tool_use]})
        result = {"type": "tool_result", "tool_use_id": tool_use_id, "content": "[error] listing failed"}
        messages.append({"role": "user", "content": [result]})
    return messages


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", ""))


@pytest.fixture
async def client(faults: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with (
        serve_simulator(SimulatorSettings(faults=faults)) as url,
        anthropic.AsyncAnthropic(base_url=url, api_key="sim", max_retries=0) as api,
    ):
        yield api


async def create_at_turn(api: anthropic.AsyncAnthropic, turn: int) -> anthropic.types.Message:
    return await api.messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=conversation_for_turn(turn))


def seconds_until(header: str) -> float:
    reset = datetime.strptime(header, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (reset - datetime.now(UTC)).total_seconds()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("429@6", (FaultSpec(turn=6, kind="status", status=429),)),
        (
            " 429:1@6 , 500@2,",
            (
                FaultSpec(turn=6, kind="status", status=429, retry_after_s=1),
                FaultSpec(turn=2, kind="status", status=500),
            ),
        ),
        ("overloaded-stream@3", (FaultSpec(turn=3, kind="overloaded-stream", status=529),)),
    ],
)
def test_parse_valid_fault_lists(text: str, expected: tuple[FaultSpec, ...]) -> None:
    assert parse_fault_specs(text) == expected


@pytest.mark.parametrize(
    ("text", "entry", "reason"),
    [
        ("429@6,abc", "abc", "unrecognised syntax"),
        ("429", "429", "unrecognised syntax"),
        ("429@x", "429@x", "unrecognised syntax"),
        ("200@2", "200@2", "status 200 is not an HTTP error status"),
        ("500@0", "500@0", "turn numbers start at 1"),
        ("overloaded-stream@0", "overloaded-stream@0", "turn numbers start at 1"),
        ("429:-1@6", "429:-1@6", "unrecognised syntax"),
    ],
)
def test_parse_rejects_bad_entry(text: str, entry: str, reason: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_specs(text)

    assert caught.value.entry == entry
    assert str(caught.value) == f"invalid fault entry {entry!r} in TURNLOG_SIM_FAULTS: {reason}. {EXPECTED_FORM}"


def test_settings_reject_bad_fault_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_SIM_FAULTS", "429@6,5xx@2")

    with pytest.raises(ValueError, match="invalid fault entry '5xx@2' in TURNLOG_SIM_FAULTS: unrecognised syntax"):
        SimulatorSettings()


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_SIM_FAULTS", "529@4")
    monkeypatch.setenv("TURNLOG_SIM_LATENCY_MS", "2.5")
    monkeypatch.setenv("TURNLOG_SIM_MAX_LOGGED_REQUESTS", "7")

    settings = SimulatorSettings()

    assert settings.fault_specs() == (FaultSpec(turn=4, kind="status", status=529),)
    assert settings.latency_ms == 2.5
    assert settings.max_logged_requests == 7
    assert SimulatorSettings.model_fields["latency_ms"].default == 0.0
    assert SimulatorSettings.model_fields["max_logged_requests"].default == 500


def test_injector_fires_same_turn_faults_in_order() -> None:
    injector = FaultInjector(parse_fault_specs("500@2,429@2,529@3"))

    assert injector.take(1) is None
    assert injector.take(2) == FaultSpec(turn=2, kind="status", status=500)
    assert injector.take(2) == FaultSpec(turn=2, kind="status", status=429)
    assert injector.take(2) is None
    assert injector.pending() == (FaultSpec(turn=3, kind="status", status=529),)


def test_injector_fires_once_across_threads() -> None:
    injector = FaultInjector(parse_fault_specs("429@6"))
    taken: list[FaultSpec | None] = []
    barrier = threading.Barrier(16)

    def take() -> None:
        barrier.wait()
        taken.append(injector.take(6))

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert len(taken) == 16
    assert [spec for spec in taken if spec is not None] == [FaultSpec(turn=6, kind="status", status=429)]


STATUS_FAULTS = [
    ("429@6", 6, anthropic.RateLimitError, 429, "rate_limit_error", "3600"),
    ("529@2", 2, anthropic.OverloadedError, 529, "overloaded_error", None),
    ("500@2", 2, anthropic.InternalServerError, 500, "api_error", None),
    ("400@3", 3, anthropic.BadRequestError, 400, "invalid_request_error", None),
    ("401@1", 1, anthropic.AuthenticationError, 401, "authentication_error", None),
    ("403@2", 2, anthropic.PermissionDeniedError, 403, "permission_error", None),
    ("404@2", 2, anthropic.NotFoundError, 404, "not_found_error", None),
    ("413@2", 2, anthropic.APIStatusError, 413, "request_too_large", None),
    ("503@2", 2, anthropic.InternalServerError, 503, "api_error", None),
    ("504@2", 2, anthropic.InternalServerError, 504, "timeout_error", None),
    ("418@2", 2, anthropic.APIStatusError, 418, "invalid_request_error", None),
]


@pytest.mark.parametrize(
    ("faults", "turn", "error_class", "status", "error_type", "retry_after"),
    STATUS_FAULTS,
    indirect=["faults"],
)
async def test_status_fault_fires_once(
    client: anthropic.AsyncAnthropic,
    faults: str,
    turn: int,
    error_class: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
    retry_after: str | None,
) -> None:
    if turn > 1:
        earlier = await create_at_turn(client, turn - 1)
        assert earlier.stop_reason == "tool_use"

    with pytest.raises(error_class) as caught:
        await create_at_turn(client, turn)

    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.body["error"]["message"].endswith(f"(fault {faults} injected by the turnlog simulator)")
    assert error.response.headers["request-id"] == error.request_id == error.body["request_id"]
    assert error.response.headers.get("retry-after") == retry_after

    retried = await create_at_turn(client, turn)
    assert retried.stop_reason == "tool_use"


@pytest.mark.parametrize("faults", ["429@6"], indirect=True)
async def test_rate_limit_headers_point_an_hour_ahead(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        await create_at_turn(client, 6)

    headers = caught.value.response.headers
    assert headers["retry-after"] == "3600"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert 3590 <= seconds_until(headers["anthropic-ratelimit-requests-reset"]) <= 3601
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message == (
        "This request would exceed the rate limit of 4000 requests per minute. "
        "(fault 429@6 injected by the turnlog simulator)"
    )


@pytest.mark.parametrize("faults", ["429:1@6"], indirect=True)
async def test_retry_after_override(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        await create_at_turn(client, 6)

    headers = caught.value.response.headers
    assert headers["retry-after"] == "1"
    assert -1 <= seconds_until(headers["anthropic-ratelimit-requests-reset"]) <= 2
    assert (await create_at_turn(client, 6)).stop_reason == "tool_use"


@pytest.mark.parametrize("faults", ["overloaded-stream@3"], indirect=True)
async def test_overloaded_stream_breaks_stream_once(client: anthropic.AsyncAnthropic) -> None:
    request: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "tools": TOOLS, "messages": conversation_for_turn(3)}
    seen_events: list[str] = []

    async def consume_stream() -> None:
        async with client.messages.stream(**request) as stream:
            async for event in stream:
                seen_events.append(event.type)

    with pytest.raises(anthropic.APIStatusError) as caught:
        await consume_stream()

    assert seen_events == ["message_start"]
    assert caught.value.status_code == 200
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": caught.value.response.headers["request-id"],
    }

    async with client.messages.stream(**request) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize("faults", ["overloaded-stream@3"], indirect=True)
async def test_overloaded_stream_without_stream_is_529(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.OverloadedError) as caught:
        await create_at_turn(client, 3)

    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert (await create_at_turn(client, 3)).stop_reason == "tool_use"


@pytest.mark.parametrize("faults", ["429@2"], indirect=True)
async def test_invalid_request_does_not_use_fault(client: anthropic.AsyncAnthropic) -> None:
    broken = conversation_for_turn(2)
    broken[2] = {"role": "user", "content": "   "}

    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=broken)
    with pytest.raises(anthropic.RateLimitError):
        await create_at_turn(client, 2)


async def test_fault_state_is_per_app() -> None:
    settings = SimulatorSettings(faults="500@1")
    body = {"model": MODEL, "max_tokens": 16, "messages": conversation_for_turn(1)}
    statuses: list[int] = []
    for _ in range(2):
        async with serve_simulator(settings) as url, httpx.AsyncClient() as http:
            statuses.append((await http.post(f"{url}/v1/messages", json=body)).status_code)

    assert statuses == [500, 500]


async def test_max_tokens_fault_cuts_tool_call() -> None:
    settings = SimulatorSettings(faults="max_tokens@1")
    async with serve_simulator(settings) as url:
        client = anthropic.AsyncAnthropic(api_key="test", base_url=url, max_retries=0)
        messages = conversation_for_turn(1)
        cut = await client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=messages)
        whole = await client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=messages)
        await client.close()

    assert cut.stop_reason == "max_tokens"
    assert cut.content[-1].type == "tool_use"
    assert cut.content[-1].input == {}
    assert whole.stop_reason == "tool_use"
    assert whole.content[-1].input == {"path": "."}
