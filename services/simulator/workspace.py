"""Facts about the repository that the scripted agent derives from the tool results of a conversation."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from services.simulator.edits import DECORATOR
from services.simulator.transcript import ToolCall, file_text, python_paths, search_hits

__all__ = ["Workspace"]

# File names that usually hold the request handlers of a Python service.
_MAIN_NAMES = frozenset({"app.py", "main.py", "server.py", "api.py", "views.py", "routes.py", "handlers.py"})
_SKIPPED_DIRECTORIES = frozenset({"venv", "site-packages", "node_modules", "build", "dist", "__pycache__"})
_SKIPPED_FILES = frozenset({"setup.py", "conftest.py", "noxfile.py"})


class Workspace:
    """A read-only view of the tool calls of one conversation, with the agent's choices derived from them."""

    def __init__(self, calls: Sequence[ToolCall]) -> None:
        self._calls = tuple(calls)

    def calls_named(self, name: str) -> list[ToolCall]:
        """Return the calls of one tool, in order."""
        return [call for call in self._calls if call.name == name]

    def known_files(self) -> frozenset[str]:
        """Return every `.py` path seen in listings, search hits, reads and writes."""
        paths: set[str] = set()
        for call in self.calls_named("list_files") + self.calls_named("search_code"):
            if call.succeeded and call.result is not None:
                paths.update(python_paths(call.result))
        for call in self.calls_named("read_file") + self.calls_named("write_file"):
            paths.add(_normalized(call.input.get("path")))
        return frozenset(paths)

    def candidates(self) -> list[str]:
        """Rank the `.py` files that could hold the handlers: likely names, then most definitions."""
        hits: dict[str, int] = {}
        for call in self.calls_named("search_code"):
            if call.succeeded and call.result is not None:
                for path, count in search_hits(call.result).items():
                    hits[path] = hits.get(path, 0) + count
        for call in self.calls_named("list_files"):
            if call.succeeded and call.result is not None:
                for path in python_paths(call.result):
                    hits.setdefault(path, 0)

        usable = [path for path in hits if _is_source(path)]
        return sorted(usable, key=lambda path: _candidate_rank(path, hits[path]))

    def read_call(self, path: str) -> ToolCall | None:
        """Return the last `read_file` call for `path`, if any."""
        reads = [call for call in self.calls_named("read_file") if _normalized(call.input.get("path")) == path]
        return reads[-1] if reads else None

    def main_path(self) -> str | None:
        """Return the best candidate whose read has not failed."""
        for path in self.candidates():
            call = self.read_call(path)
            if call is None or call.succeeded:
                return path
        return None

    def main_source(self) -> str | None:
        """Return the content of the main module once a read of it succeeded."""
        main = self.main_path()
        call = self.read_call(main) if main is not None else None
        if call is None or not call.succeeded or call.result is None:
            return None
        return file_text(call.result)

    def second_path(self) -> str | None:
        """Return the next candidate after the main module whose read has not failed."""
        main = self.main_path()
        for path in self.candidates():
            call = self.read_call(path)
            if path != main and (call is None or call.succeeded):
                return path
        return None

    def write_call(self) -> ToolCall | None:
        """Return the `write_file` call of the errors module, if the agent made one."""
        writes = self.calls_named("write_file")
        return writes[0] if writes else None

    def written_module(self) -> str | None:
        """Return the path of the errors module once writing it succeeded."""
        call = self.write_call()
        if call is None or not call.succeeded:
            return None
        return _normalized(call.input.get("path"))

    def import_call(self) -> ToolCall | None:
        """Return the `edit_file` call that imported the errors module, if any."""
        return self._edit_containing(f"import {DECORATOR}")

    def decorator_call(self) -> ToolCall | None:
        """Return the `edit_file` call that applied the decorator, if any."""
        return self._edit_containing(f"@{DECORATOR}\n")

    def _edit_containing(self, text: str) -> ToolCall | None:
        for call in self.calls_named("edit_file"):
            if text in str(call.input.get("new_string", "")):
                return call
        return None


def _normalized(path: object) -> str:
    return str(path).removeprefix("./") if path is not None else ""


def _is_source(path: str) -> bool:
    parts = path.split("/")
    if any(part.startswith(".") or part in _SKIPPED_DIRECTORIES for part in parts[:-1]):
        return False
    return parts[-1] not in _SKIPPED_FILES


def _is_test(path: str) -> bool:
    name = posixpath.basename(path)
    directories = path.split("/")[:-1]
    return name.startswith("test_") or name.endswith("_test.py") or any(d.startswith("test") for d in directories)


def _candidate_rank(path: str, hits: int) -> tuple[bool, bool, bool, int, str]:
    name = posixpath.basename(path)
    return _is_test(path), name == "__init__.py", name not in _MAIN_NAMES, -hits, path
