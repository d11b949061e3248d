"""The agent's tools: their Messages API schemas and their execution over one job's workspace."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from contracts.events import FileChange
from services.runner.paths import PathOutsideWorkspaceError, resolve_inside, workspace_relative
from services.runner.reading import (
    BINARY_SNIFF_BYTES,
    NOTE_RESERVE_BYTES,
    ToolFailedError,
    cap_output,
    is_binary,
    list_entries,
    number_lines,
    search_files,
)

__all__ = ["MAX_SEARCH_HITS", "TOOL_DEFINITIONS", "ToolOutcome", "Workspace"]

MAX_SEARCH_HITS = 500
"""Matching lines shown by one search_code call; the output still reports how many matched in all."""


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"name": name, "description": description, "input_schema": schema}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _line_number(description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "description": description}


_FILE_PATH = _string("File path relative to the workspace root, such as 'src/app.py'.")

TOOL_DEFINITIONS: list[dict[str, Any]] = [
    _tool(
        "list_files",
        "List the files and directories under a workspace directory, recursively. Returns one path per "
        "line, relative to the workspace root and sorted; directories end with '/'. The .git directory "
        "is skipped, and symlinks are listed but not entered. Long output is truncated with a note.",
        {"path": _string("Directory relative to the workspace root. Defaults to '.', the root.")},
        [],
    ),
    _tool(
        "read_file",
        "Read a UTF-8 text file of the workspace. Each output line starts with its 1-based line number "
        "and a tab, which are not part of the file. Reads the whole file unless start_line or end_line "
        "is given. Long output is truncated with a note that gives the start_line to read on from.",
        {
            "path": _FILE_PATH,
            "start_line": _line_number("First line to show, 1-based. Defaults to 1."),
            "end_line": _line_number("Last line to show, inclusive. Defaults to the last line."),
        },
        ["path"],
    ),
    _tool(
        "search_code",
        "Find the lines of the workspace's text files that contain a string, matched exactly and "
        "case-sensitively, not as a regular expression. Returns 'path:line: text' lines sorted by path "
        "then line. Binary files and .git are skipped. The number of lines shown is capped, with a note "
        "that gives the total.",
        {
            "query": _string("Text to find within one line."),
            "file_type": _string("Only search files with this extension, without the dot, such as 'py'."),
        },
        ["query"],
    ),
    _tool(
        "edit_file",
        "Replace one exact piece of text in an existing file. old_string must occur exactly once in the "
        "file, whitespace and indentation included; add surrounding lines to make it unique.",
        {
            "path": _FILE_PATH,
            "old_string": _string("The exact text to replace."),
            "new_string": _string("The text to put in its place."),
        },
        ["path", "old_string", "new_string"],
    ),
    _tool(
        "write_file",
        "Create a file, or overwrite it, with the given content. Parent directories are created as needed.",
        {"path": _FILE_PATH, "content": _string("The complete new text of the file.")},
        ["path", "content"],
    ),
    _tool(
        "finish",
        "End the job, once the task is done or cannot be done, with a summary for the user.",
        {"summary": _string("What was changed and why, or why the task could not be done.")},
        ["summary"],
    ),
]

_SCHEMAS: dict[str, dict[str, Any]] = {tool["name"]: tool["input_schema"] for tool in TOOL_DEFINITIONS}

_StructT = TypeVar("_StructT", bound=msgspec.Struct)


class _ListFilesInput(msgspec.Struct, forbid_unknown_fields=True):
    path: str = "."


class _ReadFileInput(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    start_line: int | None = None
    end_line: int | None = None


class _SearchCodeInput(msgspec.Struct, forbid_unknown_fields=True):
    query: str
    file_type: str | None = None


class _EditFileInput(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    old_string: str
    new_string: str


class _WriteFileInput(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    content: str


class _FinishInput(msgspec.Struct, forbid_unknown_fields=True):
    summary: str


def _decode_input(tool: str, tool_input: object, input_type: type[_StructT]) -> _StructT:
    # msgspec names a missing field without its type, so that case is checked against the schema first.
    if isinstance(tool_input, dict):
        for field in msgspec.structs.fields(input_type):
            if field.required and field.name not in tool_input:
                expected = _SCHEMAS[tool]["properties"][field.name]["type"]
                raise ToolFailedError(
                    f"{tool} input is missing the required field `{field.name}` ({expected}); call {tool} again with it"
                )
    try:
        return msgspec.convert(tool_input, input_type)
    except msgspec.ValidationError as exc:
        raise ToolFailedError(f"invalid {tool} input: {exc}; call {tool} again with that fixed") from exc


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """The result of one tool call, which the runner sends back as a `tool_result` block."""

    content: str
    """Text sent back to the model as the tool_result content."""
    is_error: bool = False
    finished: bool = False
    """True only for a valid `finish` call."""
    summary: str | None = None
    """The summary of a valid `finish` call."""


class Workspace:
    """One job's checkout, where the tools run confined to the root, and the files they changed."""

    def __init__(self, root: Path, *, max_output_bytes: int = 32 * 1024, max_file_bytes: int = 256 * 1024) -> None:
        if max_output_bytes < 4 * NOTE_RESERVE_BYTES:
            raise ValueError(
                f"max_output_bytes is {max_output_bytes}; it must be at least {4 * NOTE_RESERVE_BYTES} "
                "so that truncated output has room for content and its note"
            )
        # Resolved once, so that a root reached through a symlink still confines correctly.
        self._root = Path(os.path.realpath(root))
        self._max_output_bytes = max_output_bytes
        self._max_file_bytes = max_file_bytes
        self._max_change_bytes: int | None = None
        self._touched: set[str] = set()
        self._change_sizes: dict[str, int] = {}
        self._handlers: dict[str, Callable[[object], ToolOutcome]] = {
            "list_files": self._list_files,
            "read_file": self._read_file,
            "search_code": self._search_code,
            "edit_file": self._edit_file,
            "write_file": self._write_file,
            "finish": self._finish,
        }

    def run_tool(self, name: str, tool_input: object) -> ToolOutcome:
        """Run one tool call. Every failure that the model can correct comes back as an is_error outcome."""
        outcome = self._dispatch(name, tool_input)

        # Tools cap their own output with a specific hint, so this cuts only errors that quote a long input.
        content = cap_output(outcome.content, self._max_output_bytes, "send a shorter input")
        return replace(outcome, content=content)

    def _dispatch(self, name: str, tool_input: object) -> ToolOutcome:
        handler = self._handlers.get(name)
        if handler is None:
            known = ", ".join(self._handlers)
            return ToolOutcome(content=f"unknown tool {name!r}; use one of: {known}", is_error=True)

        try:
            outcome = handler(tool_input)
        except (ToolFailedError, PathOutsideWorkspaceError) as exc:
            outcome = ToolOutcome(content=str(exc), is_error=True)
        except OSError as exc:
            # Permission errors, symlink loops and over-long names are facts of the checkout, not bugs.
            reason = exc.strerror or type(exc).__name__
            outcome = ToolOutcome(content=f"{name} failed: {reason}; try another path", is_error=True)
        return outcome

    def limit_changes(self, max_bytes: int | None) -> None:
        """Cap the JSON size of the changes recorded until the next `take_changes`; None removes the cap.

        The runner sets it per turn to the room its event has left, so that a turn's changes always fit.
        """
        self._max_change_bytes = max_bytes

    def take_changes(self) -> list[FileChange]:
        """Return each file written or edited since the last call with its current text, and forget them.

        A path is reported even when its text ended up as it was before, and its content is None
        when the file no longer exists. The list contains one change per path, sorted by path.
        """
        changes: list[FileChange] = []
        for path in sorted(self._touched):
            file = self._root / path
            content = file.read_bytes().decode() if file.is_file() else None
            changes.append(FileChange(path=path, content=content))
        self._touched.clear()
        self._change_sizes.clear()
        return changes

    def apply_changes(self, changes: Iterable[FileChange]) -> None:
        """Write or delete each changed file, to rebuild a workspace from recorded turns.

        Raise PathOutsideWorkspaceError for a path that the tools could not have written. Applied
        changes are not reported by `take_changes`, because the events they came from contain them.
        """
        for change in changes:
            file = resolve_inside(self._root, change.path)
            workspace_relative(self._root, file, change.path)
            if change.content is None:
                file.unlink(missing_ok=True)
                continue
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(change.content.encode())

    def _resolve(self, path: str) -> tuple[str, Path]:
        file = resolve_inside(self._root, path)
        relative = workspace_relative(self._root, file, path)
        # realpath returns a symlink unresolved only when it is part of a loop.
        if file.is_symlink():
            raise ToolFailedError(f"{path!r} is a symlink loop; use another path")
        return relative, file

    def _existing_file(self, path: str) -> tuple[str, Path]:
        relative, file = self._resolve(path)
        if file.is_dir():
            raise ToolFailedError(f"{path!r} is a directory; use list_files to see its files")
        if not file.exists():
            raise ToolFailedError(f"file {path!r} not found; use list_files to see which files exist")
        return relative, file

    def _list_files(self, tool_input: object) -> ToolOutcome:
        args = _decode_input("list_files", tool_input, _ListFilesInput)
        relative, directory = self._resolve(args.path)
        if not directory.exists():
            raise ToolFailedError(f"directory {args.path!r} not found; use list_files on '.' to see the tree")
        if not directory.is_dir():
            raise ToolFailedError(f"{args.path!r} is a file, not a directory; use read_file to read it")

        entries = list_entries(self._root, directory)
        lines = sorted(f"{entry.path}/" if entry.is_dir else entry.path for entry in entries)
        if not lines:
            return ToolOutcome(content=f"[directory {relative!r} is empty]")
        hint = "use list_files on a subdirectory to see the rest"
        return ToolOutcome(content=cap_output("\n".join(lines), self._max_output_bytes, hint))

    def _read_file(self, tool_input: object) -> ToolOutcome:
        args = _decode_input("read_file", tool_input, _ReadFileInput)
        start = 1 if args.start_line is None else args.start_line
        if start < 1:
            raise ToolFailedError(f"start_line {start} is invalid; lines are numbered from 1")
        if args.end_line is not None and args.end_line < start:
            raise ToolFailedError(
                f"end_line {args.end_line} is before start_line {start}; "
                "send an end_line of at least start_line, or leave it out to read to the end"
            )

        relative, file = self._existing_file(args.path)
        with file.open("rb") as handle:
            if is_binary(handle.read(BINARY_SNIFF_BYTES)):
                raise ToolFailedError(f"{relative!r} is a binary file; read_file shows only UTF-8 text")
            handle.seek(0)
            text = number_lines(relative, handle, start, args.end_line, self._max_output_bytes)
        return ToolOutcome(content=text)

    def _search_code(self, tool_input: object) -> ToolOutcome:
        args = _decode_input("search_code", tool_input, _SearchCodeInput)
        if not args.query:
            raise ToolFailedError("query is empty; send the text to search for")
        if "\n" in args.query or "\r" in args.query:
            raise ToolFailedError("query contains a line break; search_code matches text within one line")
        extension = args.file_type.lstrip(".") if args.file_type else None

        hits = search_files(self._root, args.query, extension, MAX_SEARCH_HITS)
        if hits.total == 0:
            scope = f" in .{extension} files" if extension else ""
            return ToolOutcome(content=f"[no lines contain {args.query!r}{scope}]")

        note = ""
        if hits.total > len(hits.lines):
            note = (
                f"\n[search found {hits.total} matching lines and showed the first {len(hits.lines)}; "
                "use a longer query or file_type to narrow it]"
            )
        hint = "use a longer query or file_type to narrow the search"
        body = cap_output("\n".join(hits.lines), self._max_output_bytes - len(note.encode()), hint)
        return ToolOutcome(content=body + note)

    def _edit_file(self, tool_input: object) -> ToolOutcome:
        args = _decode_input("edit_file", tool_input, _EditFileInput)
        if not args.old_string:
            raise ToolFailedError("old_string is empty; send the exact text to replace, or use write_file")
        if args.old_string == args.new_string:
            raise ToolFailedError("old_string and new_string are the same, so the edit would change nothing")

        relative, file = self._existing_file(args.path)
        try:
            text = file.read_bytes().decode()
        except UnicodeDecodeError as exc:
            raise ToolFailedError(f"{relative!r} is not UTF-8 text; edit_file edits only UTF-8 files") from exc

        index = text.find(args.old_string)
        if index == -1:
            raise ToolFailedError(
                f"old_string was not found in {relative!r}; read the file again and copy the text "
                "exactly, whitespace and indentation included"
            )
        # Searching again from the next character also catches a second match overlapping the first.
        if text.find(args.old_string, index + 1) != -1:
            matches = max(2, text.count(args.old_string))
            raise ToolFailedError(
                f"old_string matches {matches} places in {relative!r}; add surrounding lines to "
                "old_string so that it matches exactly one"
            )

        new_text = text[:index] + args.new_string + text[index + len(args.old_string) :]
        self._check_file_size(relative, new_text)
        self._check_change_room(relative, new_text)
        self._store(relative, file, new_text)
        line = text.count("\n", 0, index) + 1
        return ToolOutcome(content=f"Edited {relative}: replaced the text at line {line}.")

    def _write_file(self, tool_input: object) -> ToolOutcome:
        args = _decode_input("write_file", tool_input, _WriteFileInput)
        relative, file = self._resolve(args.path)
        if file.is_dir():
            raise ToolFailedError(f"{args.path!r} is a directory; write_file needs a file path")
        self._check_file_size(relative, args.content)
        self._check_change_room(relative, args.content)

        existed = file.exists()
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ToolFailedError(
                f"cannot create the directories of {relative!r} because one of its parents is a file; "
                "choose another path"
            ) from exc
        self._store(relative, file, args.content)
        verb = "Overwrote" if existed else "Created"
        return ToolOutcome(content=f"{verb} {relative} ({len(args.content.encode())} bytes).")

    def _check_file_size(self, relative: str, content: str) -> None:
        # Every change travels inside one event, and the event store limits the size of an event.
        size = len(content.encode())
        if size > self._max_file_bytes:
            raise ToolFailedError(
                f"the new content of {relative!r} is {size} bytes, over the limit of "
                f"{self._max_file_bytes} bytes per file; split it into smaller files"
            )

    def _check_change_room(self, relative: str, content: str) -> None:
        # The sizes are measured as JSON, the form the change takes inside the turn's event.
        if self._max_change_bytes is None:
            return
        size = _change_size(relative, content)
        others = sum(used for path, used in self._change_sizes.items() if path != relative)
        if others + size > self._max_change_bytes:
            room = max(self._max_change_bytes - others, 0)
            raise ToolFailedError(
                f"the new content of {relative!r} takes {size} bytes, but this turn has room for only {room} "
                "more bytes of file changes; write it in smaller pieces over several turns"
            )

    def _store(self, relative: str, file: Path, content: str) -> None:
        file.write_bytes(content.encode())
        self._touched.add(relative)
        self._change_sizes[relative] = _change_size(relative, content)

    def _finish(self, tool_input: object) -> ToolOutcome:
        args = _decode_input("finish", tool_input, _FinishInput)
        if not args.summary.strip():
            raise ToolFailedError("summary is empty; say what was done, or why the task could not be done")
        return ToolOutcome(content="Finished.", finished=True, summary=args.summary)


def _change_size(path: str, content: str) -> int:
    return len(msgspec.json.encode(FileChange(path=path, content=content)))
