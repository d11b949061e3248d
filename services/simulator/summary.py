"""The `finish` summary of the scripted agent: what it changed, and what it could not change and why."""

from __future__ import annotations

import re

from services.simulator.edits import DECORATOR
from services.simulator.templates import ERRORS_MODULE_RESPONSES
from services.simulator.transcript import ToolCall
from services.simulator.workspace import Workspace

__all__ = ["summarize"]

_RESPONSE_BEHAVIOUR = (
    "turns `ApiError` into its status, `KeyError` into a 404 response, `ValueError` and `TypeError` "
    "into 400 and logs any other exception as a 500"
)
_RAISING_BEHAVIOUR = (
    "re-raises `KeyError` as a 404 `ApiError`, `ValueError` and `TypeError` as 400 and logs any other "
    "exception as a 500"
)


def summarize(workspace: Workspace) -> str:
    """Describe the change in a few sentences, naming the files and the function involved."""
    write = workspace.write_call()
    if write is None:
        return "I stopped before changing any file because I found no module I could read and change."

    path = str(write.input.get("path", ""))
    if not write.succeeded:
        return f"I could not write `{path}` ({_first_line(write)}), so no file was changed."

    behaviour = _RESPONSE_BEHAVIOUR if write.input.get("content") == ERRORS_MODULE_RESPONSES else _RAISING_BEHAVIOUR
    added = f"Added `{path}` with an `ApiError` exception and a `{DECORATOR}` decorator that {behaviour}."
    main = workspace.main_path()
    if main is None or workspace.main_source() is None:
        return f"{added} I found no Python module to wire it into; apply `@{DECORATOR}` to the request handlers."

    imported = workspace.import_call()
    if imported is None:
        return f"{added} I could not find a safe place to import it in `{main}`, so the handlers are unchanged."
    if not imported.succeeded:
        reason = _first_line(imported)
        return f"{added} Importing it in `{main}` failed ({reason}), so the handlers are unchanged."

    decorated = workspace.decorator_call()
    if decorated is None:
        return f"{added} Imported it in `{main}`, but found no function there to decorate."
    if not decorated.succeeded:
        return f"{added} Imported it in `{main}`, but applying the decorator failed ({_first_line(decorated)})."

    function = _function_name(decorated)
    return (
        f"{added} Imported it in `{main}` and applied `@{DECORATOR}` to `{function}`, so its failures "
        "now reach the client as JSON errors instead of unhandled exceptions. The other handlers can opt in "
        "with the same decorator."
    )


def _first_line(call: ToolCall) -> str:
    text = (call.result or "no result").strip()
    return text.splitlines()[0] if text else "no result"


def _function_name(call: ToolCall) -> str:
    match = re.search(r"def\s+(\w+)", str(call.input.get("new_string", "")))
    return match.group(1) if match else "the chosen function"
