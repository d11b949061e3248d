"""The scripted agent: a pure function from a Messages API request to the next assistant step.

On a Python repository it plays one step per turn. It lists the files, searches for `def ` in `.py`
files, reads the main module and a second module, and writes an `errors` module beside the main one
(an `ApiError` exception and a `handle_errors` decorator). It then imports that module in the main
module, decorates one function and calls `finish` with a summary. A step whose input is missing or
whose prerequisite failed is skipped, so error results shorten the plan instead of breaking it.
From turn 9 on, every reply calls `finish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.simulator.edits import (
    DECORATOR,
    decorator_edit,
    errors_module_path,
    errors_module_source,
    import_edit,
    import_statement,
)
from services.simulator.summary import summarize
from services.simulator.transcript import ToolCall, tool_calls, turn_number
from services.simulator.workspace import Workspace

__all__ = ["FINISH_AFTER_TURN", "AgentStep", "next_step"]

FINISH_AFTER_TURN = 8


@dataclass(frozen=True, kw_only=True)
class AgentStep:
    """One assistant turn: a short text, then at most one tool call (none means `end_turn`)."""

    text: str
    tool_name: str | None = None
    tool_input: dict[str, Any] = field(default_factory=dict)


def next_step(request: Mapping[str, Any]) -> AgentStep:
    """Decide the assistant's reply to `request` from its conversation alone."""
    messages = request.get("messages")
    turn = turn_number(messages)
    workspace = Workspace(tool_calls(messages))

    step = _finish(workspace) if turn > FINISH_AFTER_TURN else _plan(workspace)
    return _within_offered_tools(step, request.get("tools"))


def _plan(workspace: Workspace) -> AgentStep:
    for choose in (_list_files, _search, _read_main, _read_second, _write_module, _add_import, _decorate):
        step = choose(workspace)
        if step is not None:
            return step
    return _finish(workspace)


def _list_files(workspace: Workspace) -> AgentStep | None:
    if workspace.calls_named("list_files"):
        return None
    return AgentStep(
        text="I'll start by listing the repository to see how it is organised.",
        tool_name="list_files",
        tool_input={"path": "."},
    )


def _search(workspace: Workspace) -> AgentStep | None:
    if workspace.calls_named("search_code"):
        return None
    return AgentStep(
        text="Next I'll search the Python sources for function definitions to find the request handlers.",
        tool_name="search_code",
        tool_input={"query": "def ", "file_type": "py"},
    )


def _read_main(workspace: Workspace) -> AgentStep | None:
    main = workspace.main_path()
    if main is None or workspace.read_call(main) is not None:
        return None
    return AgentStep(
        text=f"`{main}` looks like the main module, so I'll read it first.",
        tool_name="read_file",
        tool_input={"path": main},
    )


def _read_second(workspace: Workspace) -> AgentStep | None:
    second = workspace.second_path()
    if second is None or workspace.main_source() is None or workspace.read_call(second) is not None:
        return None
    return AgentStep(
        text=f"Now I'll read `{second}` to see which exceptions can reach the handlers.",
        tool_name="read_file",
        tool_input={"path": second},
    )


def _write_module(workspace: Workspace) -> AgentStep | None:
    if workspace.calls_named("write_file"):
        return None

    main = workspace.main_path()
    main_source = workspace.main_source()
    if main is not None and main_source is None:
        # The main module exists but could not be read, so there is nothing to fit the module to.
        return None

    path = errors_module_path(main, workspace.known_files())
    if main is None:
        text = f"I found no Python module to change, so I'll add a standalone `{path}` with the error handling."
    else:
        text = (
            f"The handlers in `{main}` let every exception escape. I'll add `{path}` with an `ApiError` "
            f"exception and a `{DECORATOR}` decorator."
        )
    content = errors_module_source(main_source)
    return AgentStep(text=text, tool_name="write_file", tool_input={"path": path, "content": content})


def _add_import(workspace: Workspace) -> AgentStep | None:
    main, source, written = workspace.main_path(), workspace.main_source(), workspace.written_module()
    if main is None or source is None or written is None or workspace.import_call() is not None:
        return None

    statement = import_statement(source, written, workspace.known_files())
    edit = import_edit(source, statement)
    if edit is None:
        return None
    return AgentStep(
        text=f"Next I'll import the new module in `{main}`.",
        tool_name="edit_file",
        tool_input={"path": main, "old_string": edit.old_string, "new_string": edit.new_string},
    )


def _decorate(workspace: Workspace) -> AgentStep | None:
    main, source, import_call = workspace.main_path(), workspace.main_source(), workspace.import_call()
    if main is None or source is None or import_call is None or not import_call.succeeded:
        return None
    if workspace.decorator_call() is not None:
        return None

    edited_source = _apply_edit(source, import_call)
    chosen = decorator_edit(edited_source)
    if chosen is None:
        return None
    function_name, edit = chosen
    return AgentStep(
        text=f"Now I'll apply `@{DECORATOR}` to `{function_name}` so that its failures become error replies.",
        tool_name="edit_file",
        tool_input={"path": main, "old_string": edit.old_string, "new_string": edit.new_string},
    )


def _apply_edit(source: str, call: ToolCall) -> str:
    old_string = str(call.input.get("old_string", ""))
    new_string = str(call.input.get("new_string", ""))
    return source.replace(old_string, new_string, 1) if old_string else source


def _finish(workspace: Workspace) -> AgentStep:
    summary = summarize(workspace)
    return AgentStep(
        text="That completes the change, so I'll finish with a summary.",
        tool_name="finish",
        tool_input={"summary": summary},
    )


def _within_offered_tools(step: AgentStep, tools: object) -> AgentStep:
    """Replace a call to a tool the request does not offer with a text-only reply, as a model would."""
    if step.tool_name is None:
        return step
    offered: set[str] = set()
    if isinstance(tools, list):
        offered = {str(tool.get("name")) for tool in tools if isinstance(tool, Mapping)}
    if step.tool_name in offered:
        return step
    return AgentStep(
        text=f"I need the `{step.tool_name}` tool for the next step, but this request does not offer it, "
        "so I'll stop here."
    )
