"""HTTP behaviour of the simulator app, driven through the real anthropic client."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anthropic
import httpx
import pytest

from services.simulator import SimulatorSettings, serve_simulator

MODEL = "claude-sonnet-4-5"
TOOLS: list[anthropic.types.ToolParam] = [
    {"name": name, "description": f"The {name} tool.", "input_schema": {"type": "object"}}
    for name in ("list_files", "read_file", "search_code", "edit_file", "write_file", "finish")
]
FIRST_USER: anthropic.types.MessageParam = {"role": "user", "content": "Add error handling to the API."}


@pytest.fixture(scope="module")
async def simulator_url() -> AsyncIterator[str]:
    async with serve_simulator(SimulatorSettings()) as url:
        yield url


@pytest.fixture(scope="module")
async def client(simulator_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=simulator_url, api_key="sim", max_retries=0) as api:
        yield api


def parse_rfc3339(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def test_message_body_has_api_shape(client: anthropic.AsyncAnthropic) -> None:
    raw = await client.messages.with_raw_response.create(
        model=MODEL, max_tokens=1024, tools=TOOLS, messages=[FIRST_USER]
    )
    body = raw.http_response.json()

    assert list(body) == ["id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"]
    assert re.fullmatch(r"msg_[0-9A-Za-z]{24}", body["id"])
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["model"] == MODEL
    assert body["stop_reason"] == "tool_use"
    assert body["stop_sequence"] is None
    assert [block["type"] for block in body["content"]] == ["text", "tool_use"]
    tool_use = body["content"][1]
    assert re.fullmatch(r"toolu_[0-9A-Za-z]{24}", tool_use["id"])
    assert tool_use["name"] == "list_files"
    assert tool_use["input"] == {"path": "."}
    assert set(body["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    assert body["usage"]["input_tokens"] > 0
    assert body["usage"]["output_tokens"] > 0

    message = await raw.parse()
    assert message.content[1].type == "tool_use"
    assert message.usage.cache_read_input_tokens == 0


async def test_response_headers_match_api(client: anthropic.AsyncAnthropic) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=[FIRST_USER])
    headers = raw.http_response.headers

    assert re.fullmatch(r"req_[0-9A-Za-z]{24}", headers["request-id"])
    assert raw.request_id == headers["request-id"]
    assert headers["content-type"] == "application/json"
    assert headers["anthropic-ratelimit-requests-limit"] == "4000"
    assert headers["anthropic-ratelimit-requests-remaining"] == "3999"
    assert headers["anthropic-ratelimit-tokens-limit"] == "400000"
    assert int(headers["anthropic-ratelimit-tokens-remaining"]) < 400000
    for name in ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset"):
        reset = parse_rfc3339(headers[name])
        assert 0 <= (reset - before).total_seconds() <= 5


async def test_same_request_gives_identical_body(client: anthropic.AsyncAnthropic) -> None:
    messages = [FIRST_USER]
    first = await client.messages.with_raw_response.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=messages)
    second = await client.messages.with_raw_response.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=messages)

    assert first.http_response.content == second.http_response.content
    assert first.request_id != second.request_id


async def test_different_conversation_gives_new_ids(client: anthropic.AsyncAnthropic) -> None:
    first = await client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=[FIRST_USER])
    other_user: anthropic.types.MessageParam = {"role": "user", "content": "Add logging."}
    second = await client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=[other_user])

    assert first.id != second.id
    assert first.content[1].type == second.content[1].type == "tool_use"
    assert first.content[1].id != second.content[1].id  # type: ignore[union-attr]


async def test_stream_reassembles_same_message(client: anthropic.AsyncAnthropic) -> None:
    plain = await client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=[FIRST_USER])
    async with client.messages.stream(model=MODEL, max_tokens=64, tools=TOOLS, messages=[FIRST_USER]) as stream:
        streamed = await stream.get_final_message()

    assert streamed.model_dump() == plain.model_dump()


async def test_stream_sends_api_event_sequence(simulator_url: str) -> None:
    body = {"model": MODEL, "max_tokens": 64, "tools": TOOLS, "messages": [FIRST_USER], "stream": True}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{simulator_url}/v1/messages", json=body)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert re.fullmatch(r"req_[0-9A-Za-z]{24}", response.headers["request-id"])
    frames = [frame for frame in response.text.split("\n\n") if frame]
    events = [frame.split("\n")[0].removeprefix("event: ") for frame in frames]
    payloads = [json.loads(frame.split("\n")[1].removeprefix("data: ")) for frame in frames]
    assert [payload["type"] for payload in payloads] == events

    collapsed = [event for index, event in enumerate(events) if index == 0 or events[index - 1] != event]
    assert collapsed == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    tool_start = payloads[events.index("content_block_start", 2)]
    assert tool_start["content_block"]["input"] == {}
    json_fragments = [
        p["delta"]["partial_json"] for p in payloads if p.get("delta", {}).get("type") == "input_json_delta"
    ]
    assert json_fragments[0] == ""
    assert json.loads("".join(json_fragments)) == {"path": "."}
    message_delta = payloads[events.index("message_delta")]
    assert message_delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert message_delta["usage"]["output_tokens"] > 1


async def test_request_without_tools_gets_text_answer(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(model=MODEL, max_tokens=64, messages=[FIRST_USER])

    assert message.stop_reason == "end_turn"
    assert len(message.content) == 1
    assert message.content[0].type == "text"
    assert "`list_files`" in message.content[0].text


async def test_request_log_lists_and_clears(client: anthropic.AsyncAnthropic, simulator_url: str) -> None:
    async with httpx.AsyncClient() as http:
        await http.delete(f"{simulator_url}/_sim/requests")
    await client.messages.create(model=MODEL, max_tokens=10, messages=[FIRST_USER])
    await client.messages.create(model=MODEL, max_tokens=20, tools=TOOLS, messages=[FIRST_USER])

    async with httpx.AsyncClient() as http:
        listed = await http.get(f"{simulator_url}/_sim/requests")
        cleared = await http.delete(f"{simulator_url}/_sim/requests")
        after = await http.get(f"{simulator_url}/_sim/requests")

    assert listed.status_code == 200
    bodies = listed.json()
    assert [body["max_tokens"] for body in bodies] == [10, 20]
    assert bodies[0] == {"max_tokens": 10, "messages": [FIRST_USER], "model": MODEL}
    assert bodies[1]["tools"] == TOOLS
    assert cleared.status_code == 200
    assert cleared.json() == {"cleared": 2}
    assert after.json() == []


async def test_request_log_keeps_most_recent() -> None:
    async with (
        serve_simulator(SimulatorSettings(max_logged_requests=2)) as url,
        anthropic.AsyncAnthropic(base_url=url, api_key="sim", max_retries=0) as api,
    ):
        for max_tokens in (1, 2, 3):
            await api.messages.create(model=MODEL, max_tokens=max_tokens, messages=[FIRST_USER])
        async with httpx.AsyncClient() as http:
            bodies = (await http.get(f"{url}/_sim/requests")).json()

    assert [body["max_tokens"] for body in bodies] == [2, 3]


async def test_unknown_route_has_api_error_shape(simulator_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{simulator_url}/v1/models/unknown")

    assert response.status_code == 404
    body = response.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": "not_found_error", "message": "Not Found"}
    assert body["request_id"] == response.headers["request-id"]


async def test_malformed_json_is_rejected(simulator_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{simulator_url}/v1/messages", content=b"{not json", headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Request body is not valid JSON: ")


async def test_latency_delays_each_answer() -> None:
    async with (
        serve_simulator(SimulatorSettings(latency_ms=150)) as url,
        anthropic.AsyncAnthropic(base_url=url, api_key="sim", max_retries=0) as api,
    ):
        started = time.monotonic()
        await api.messages.create(model=MODEL, max_tokens=10, messages=[FIRST_USER])
        elapsed = time.monotonic() - started

    assert elapsed >= 0.15
