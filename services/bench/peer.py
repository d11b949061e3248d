"""The peer of rows 2 and 3: a LangGraph graph whose state is a message list, saved by `SqliteSaver`.

LangGraph is an optional extra (`pip install -e '.[bench]'`), so it is imported at run time and a
missing install turns into PeerUnavailableError instead of an import failure.
"""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

import msgspec

from contracts.events import TurnCompleted

__all__ = ["LangGraphPeer", "PeerUnavailableError"]


class PeerUnavailableError(RuntimeError):
    """LangGraph or its SQLite checkpointer cannot be imported."""


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PeerUnavailableError(
            f"cannot import {module} ({exc}); install it with `.venv/bin/pip install -e '.[bench]'`"
        ) from exc


class LangGraphPeer:
    """A one-node LangGraph graph checkpointed to a SQLite file; each turn is one `update_state` step."""

    def __init__(self, database: Path) -> None:
        graph_module = _import("langgraph.graph")
        message_module = _import("langgraph.graph.message")
        sqlite_module = _import("langgraph.checkpoint.sqlite")
        self._messages = _import("langchain_core.messages")

        # The functional form, because the reducer is only known once LangGraph is imported.
        state = TypedDict("state", {"messages": Annotated[list[Any], message_module.add_messages]})  # type: ignore[misc]  # noqa: UP013
        builder = graph_module.StateGraph(state)
        builder.add_node("agent", _no_change)
        builder.add_edge(graph_module.START, "agent")
        builder.add_edge("agent", graph_module.END)
        self._connection = sqlite3.connect(str(database), check_same_thread=False)
        self._graph = builder.compile(checkpointer=sqlite_module.SqliteSaver(self._connection))

    def close(self) -> None:
        """Close the SQLite connection."""
        self._connection.close()

    def seed(self, thread_id: str, task: str, turns: list[TurnCompleted]) -> dict[str, Any]:
        """Write a conversation of `turns` in one step and return the config that points at it."""
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
        messages: list[Any] = [self._messages.HumanMessage(content=task)]
        for turn in turns:
            messages.extend(self.turn_messages(turn))
        result: dict[str, Any] = self._graph.update_state(config, {"messages": messages}, as_node="agent")
        return result

    def turn_messages(self, turn: TurnCompleted) -> list[Any]:
        """Convert one turnlog turn into the equal LangChain messages: the AI message and its tool results."""
        blocks = msgspec.json.decode(turn.assistant_content)
        text = [block for block in blocks if block.get("type") == "text"]
        calls = [
            {"name": block["name"], "args": block["input"], "id": block["id"]}
            for block in blocks
            if block.get("type") == "tool_use"
        ]
        messages: list[Any] = [self._messages.AIMessage(content=text, tool_calls=calls)]
        for result in turn.tool_results:
            messages.append(self._messages.ToolMessage(content=result.content, tool_call_id=result.tool_use_id))
        return messages

    def append_turn(self, config: dict[str, Any], messages: list[Any]) -> None:
        """Append one turn as a graph step on top of the checkpoint `config` points at."""
        self._graph.update_state(config, {"messages": messages}, as_node="agent")

    def read_state(self, config: dict[str, Any]) -> int:
        """Load and decode the thread's state; return its number of messages."""
        snapshot = self._graph.get_state(config)
        return len(snapshot.values["messages"])


def _no_change(state: dict[str, Any]) -> dict[str, Any]:
    return {}
