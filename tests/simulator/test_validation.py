"""Request validation: each rule gets a 400 `invalid_request_error` with the API's message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest

from services.simulator import SimulatorSettings, serve_simulator
from services.simulator.validation import InvalidRequestError, validate_request

MODEL = "claude-sonnet-4-5"
USER = {"role": "user", "content": "Add error handling to the API."}
MISSING_RESULT = (
    "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: {ids}. "
    "Each `tool_use` block must have a corresponding `tool_result` block in the next message."
)
WHITESPACE_TEXT = "messages: text content blocks must contain non-whitespace text"
TRAILING_WHITESPACE = "messages: final assistant content cannot end with trailing whitespace"


def tool_use(tool_use_id: str = "toolu_a") -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_use_id, "name": "list_files", "input": {"path": "."}}


def tool_result(tool_use_id: str = "toolu_a") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": "README.md"}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def request(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": messages, **fields}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


INVALID_REQUESTS = [
    pytest.param({"max_tokens": 256, "messages": [USER]}, "model: Field required", id="missing-model"),
    pytest.param({"model": MODEL, "messages": [USER]}, "max_tokens: Field required", id="missing-max-tokens"),
    pytest.param(
        request([USER], max_tokens="many"), "max_tokens: Input should be a valid integer", id="max-tokens-type"
    ),
    pytest.param(
        request([USER], max_tokens=0), "max_tokens: Input should be greater than or equal to 1", id="max-tokens-zero"
    ),
    pytest.param({"model": MODEL, "max_tokens": 256}, "messages: Field required", id="missing-messages"),
    pytest.param(request([]), "messages: at least one message is required", id="empty-messages"),
    pytest.param(
        request([assistant(text("Hello."))]), 'messages: first message must use the "user" role', id="first-assistant"
    ),
    pytest.param(
        request([USER, {"role": "system", "content": "x"}]),
        "messages.1.role: Input should be 'user' or 'assistant'",
        id="bad-role",
    ),
    pytest.param(
        request([USER, assistant(text("Listing."), tool_use()), user(text("Go on."))]),
        MISSING_RESULT.format(ids="toolu_a"),
        id="tool-use-without-result",
    ),
    pytest.param(
        request([USER, assistant(tool_use("toolu_a"), tool_use("toolu_b")), user(tool_result("toolu_a"))]),
        MISSING_RESULT.format(ids="toolu_b"),
        id="one-of-two-results-missing",
    ),
    pytest.param(
        request([USER, assistant(text("Listing."), tool_use())]),
        MISSING_RESULT.format(ids="toolu_a"),
        id="tool-use-in-final-message",
    ),
    pytest.param(
        request([USER, assistant(tool_use()), user(text("Here it is."), tool_result())]),
        "messages.2.content.1: `tool_result` block found after a `text` block. In a user message, every "
        "`tool_result` block must come before any other content.",
        id="result-after-text",
    ),
    pytest.param(
        request([USER, assistant(tool_use()), user(tool_result("toolu_other"))]),
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_other. Each "
        "`tool_result` block must have a corresponding `tool_use` block in the previous message.",
        id="result-for-unknown-id",
    ),
    pytest.param(
        request([user(tool_result("toolu_a"))]),
        "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_a. Each "
        "`tool_result` block must have a corresponding `tool_use` block in the previous message.",
        id="result-without-previous-assistant",
    ),
    pytest.param(request([user(text(""))]), WHITESPACE_TEXT, id="empty-text-block"),
    pytest.param(request([user(text(" \n\t"))]), WHITESPACE_TEXT, id="whitespace-text-block"),
    pytest.param(request([{"role": "user", "content": "   "}]), WHITESPACE_TEXT, id="whitespace-string-content"),
    pytest.param(
        request([USER, assistant(text("Done.")), {"role": "user", "content": ""}]),
        "messages.2: all messages must have non-empty content except for the optional final assistant message",
        id="empty-string-content",
    ),
    pytest.param(
        request([USER, {"role": "assistant", "content": "Sure, "}]), TRAILING_WHITESPACE, id="final-assistant-string"
    ),
    pytest.param(
        request([USER, assistant(text("Here is the plan:\n"))]), TRAILING_WHITESPACE, id="final-assistant-block"
    ),
    pytest.param(
        request([USER], tools=[{"name": "list_files"}]),
        "tools.0.input_schema: Field required",
        id="tool-without-schema",
    ),
]


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with (
        serve_simulator(SimulatorSettings()) as url,
        anthropic.AsyncAnthropic(base_url=url, api_key="sim", max_retries=0) as api,
    ):
        yield api


async def post_raw(api: anthropic.AsyncAnthropic, body: dict[str, Any]) -> anthropic.types.Message:
    # `client.post` sends the body unchanged, so fields the typed `create` would require can be left out.
    return await api.post("/v1/messages", body=body, cast_to=anthropic.types.Message)


@pytest.mark.parametrize(("body", "message"), INVALID_REQUESTS)
async def test_invalid_request_is_rejected(
    client: anthropic.AsyncAnthropic, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await post_raw(client, body)

    error = caught.value
    assert error.status_code == 400
    assert error.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
        "request_id": error.response.headers["request-id"],
    }


@pytest.mark.parametrize(("body", "message"), INVALID_REQUESTS)
def test_validate_request_message(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_request(body)

    assert caught.value.message == message


VALID_REQUESTS = [
    pytest.param(request([USER]), id="string-content"),
    pytest.param(request([user(text("Hello."))]), id="text-block"),
    pytest.param(
        request([USER, assistant(tool_use()), user(tool_result(), text("Keep going."))]), id="result-then-text"
    ),
    pytest.param(request([USER, {"role": "assistant", "content": "Sure, here"}]), id="final-assistant-prefill"),
    pytest.param(request([USER, {"role": "assistant", "content": []}]), id="empty-final-assistant"),
    pytest.param(
        request(
            [
                USER,
                assistant({"type": "thinking", "thinking": "  ", "signature": "sig"}, text("Listing."), tool_use()),
                user(
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": [text("README.md")], "is_error": False}
                ),
            ]
        ),
        id="thinking-block",
    ),
]


@pytest.mark.parametrize("body", VALID_REQUESTS)
async def test_valid_request_is_answered(client: anthropic.AsyncAnthropic, body: dict[str, Any]) -> None:
    message = await post_raw(client, body)

    assert message.type == "message"
    assert message.content[0].type == "text"


async def test_thinking_block_is_logged_untouched(client: anthropic.AsyncAnthropic) -> None:
    thinking = {"type": "thinking", "thinking": "Plan the listing.", "signature": "c2lnbmF0dXJl"}
    body = request([USER, assistant(thinking, tool_use()), user(tool_result())])

    await post_raw(client, body)
    async with httpx.AsyncClient() as http:
        logged = (await http.get(f"{client.base_url}".removesuffix("/") + "/_sim/requests")).json()

    assert logged[-1]["messages"][1]["content"][0] == thinking
