"""Assembling streamed responses: exact content, in-stream errors and cut-off streams."""

from __future__ import annotations

import pytest

from services.runner.failures import ModelFailure
from services.runner.streaming import SseParser, StreamAssembler
from services.simulator.protocol import build_message, interrupted_stream, stream_message, truncated_stream
from services.simulator.script import AgentStep

REQUEST = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Fix it."}]}


def feed(chunks: list[bytes]) -> StreamAssembler:
    parser, assembler = SseParser(), StreamAssembler()
    for line in b"".join(chunks).decode().split("\n"):
        event = parser.feed(line)
        if event is not None:
            assembler.feed(*event)
    return assembler


def test_stream_assembles_exact_content() -> None:
    step = AgentStep(
        text="Writing the module now.", tool_name="write_file", tool_input={"path": "a.py", "content": "x = 1\n"}
    )
    message = build_message(REQUEST, step, 1)

    result = feed(stream_message(message)).result()

    tool_use = message["content"][1]
    assert result.raw_content == (
        b'[{"type":"text","text":"Writing the module now."},{"type":"tool_use","id":"'
        + tool_use["id"].encode()
        + b'","name":"write_file","input":{"path":"a.py","content":"x = 1\\n"}}]'
    )
    assert result.stop_reason == "tool_use"
    assert result.usage["output_tokens"] == message["usage"]["output_tokens"]
    assert result.truncated_tool_input is False


def test_stream_error_is_overloaded() -> None:
    message = build_message(REQUEST, AgentStep(text="Hi."), 1)

    with pytest.raises(ModelFailure) as caught:
        feed(interrupted_stream(message, "req_1"))

    assert caught.value.kind == "overloaded"
    assert caught.value.retryable is True
    assert caught.value.message == "Overloaded (overloaded_error)"


def test_cut_tool_input_is_flagged() -> None:
    step = AgentStep(text="Writing.", tool_name="write_file", tool_input={"path": "a.py", "content": "x = 1\n"})

    result = feed(truncated_stream(build_message(REQUEST, step, 1))).result()

    assert result.stop_reason == "max_tokens"
    assert result.truncated_tool_input is True


def test_stream_without_stop_fails() -> None:
    message = build_message(REQUEST, AgentStep(text="Hi."), 1)

    with pytest.raises(ModelFailure) as caught:
        feed(stream_message(message)[:-1]).result()

    assert caught.value.kind == "upstream_error"
    assert caught.value.message == "the model's stream ended before message_stop"


def test_thinking_blocks_kept() -> None:
    assembler = StreamAssembler()
    assembler.feed("message_start", '{"type":"message_start","message":{"model":"m","usage":{"input_tokens":3}}}')
    start = '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}'
    assembler.feed("content_block_start", start)
    delta = '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Plan."}}'
    assembler.feed("content_block_delta", delta)
    signature = '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}'
    assembler.feed("content_block_delta", signature)
    assembler.feed("content_block_stop", '{"type":"content_block_stop","index":0}')
    assembler.feed(
        "message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}'
    )
    assembler.feed("message_stop", '{"type":"message_stop"}')

    result = assembler.result()

    assert result.raw_content == b'[{"type":"thinking","thinking":"Plan.","signature":"c2ln"}]'
    assert result.usage == {"input_tokens": 3, "output_tokens": 5}
