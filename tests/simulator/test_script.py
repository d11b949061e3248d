"""The scripted agent: a full job over the sample repository, and its steps on unusual repositories."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest

from services.simulator import SimulatorSettings, serve_simulator
from services.simulator.edits import decorator_edit, import_edit
from services.simulator.script import next_step
from services.simulator.transcript import file_text, search_hits

MODEL = "claude-sonnet-4-5"
SAMPLE_REPO = Path(__file__).resolve().parents[2] / "services" / "demo" / "sample_repo"
TOOL_NAMES = ("list_files", "read_file", "search_code", "edit_file", "write_file", "finish")
TOOLS = [{"name": name, "description": f"The {name} tool.", "input_schema": {"type": "object"}} for name in TOOL_NAMES]
TASK = {"role": "user", "content": "Add comprehensive error handling to the API."}


class RepoTools:
    """A tiny executor of the runner's tools over a directory, with `[error]` results on failure."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, name: str, tool_input: dict[str, Any]) -> tuple[str, bool]:
        try:
            return getattr(self, name)(**tool_input), False
        except (OSError, ValueError, TypeError) as exc:
            return f"[error] {name} failed: {exc}", True

    def list_files(self, path: str = ".") -> str:
        files = sorted(p for p in (self.root / path).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        return "\n".join(str(p.relative_to(self.root)) for p in files)

    def search_code(self, query: str, file_type: str | None = None) -> str:
        hits = []
        for path in sorted(self.root.rglob(f"*.{file_type}" if file_type else "*")):
            if not path.is_file():
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if query in line:
                    hits.append(f"{path.relative_to(self.root)}:{number}:{line}")
        return "\n".join(hits) or "No matches."

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        return (self.root / path).read_text()

    def write_file(self, path: str, content: str) -> str:
        (self.root / path).write_text(content)
        return f"Wrote {len(content)} characters to {path}."

    def edit_file(self, path: str, old_string: str, new_string: str) -> str:
        source = (self.root / path).read_text()
        count = source.count(old_string)
        if count != 1:
            raise ValueError(f"old_string occurs {count} times in {path}, expected exactly once")
        (self.root / path).write_text(source.replace(old_string, new_string))
        return f"Edited {path}."


async def play_job(
    api: anthropic.AsyncAnthropic, tools: RepoTools, *, stream: bool = False, max_turns: int = 12
) -> list[anthropic.types.Message]:
    """Run the agent loop like the runner does, returning every assistant message."""
    messages: list[dict[str, Any]] = [TASK]
    answers: list[anthropic.types.Message] = []
    for _ in range(max_turns):
        request: dict[str, Any] = {"model": MODEL, "max_tokens": 4096, "tools": TOOLS, "messages": messages}
        if stream:
            async with api.messages.stream(**request) as events:
                message = await events.get_final_message()
        else:
            message = await api.messages.create(**request)
        answers.append(message)
        messages.append(
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]}
        )

        calls = [block for block in message.content if block.type == "tool_use"]
        if message.stop_reason != "tool_use" or calls[0].name == "finish":
            return answers
        results = []
        for call in calls:
            output, is_error = tools.run(call.name, dict(call.input))
            results.append({"type": "tool_result", "tool_use_id": call.id, "content": output, "is_error": is_error})
        messages.append({"role": "user", "content": results})
    return answers


def tool_call(message: anthropic.types.Message) -> tuple[str, dict[str, Any]]:
    blocks = [block for block in message.content if block.type == "tool_use"]
    assert len(blocks) == 1
    return blocks[0].name, dict(blocks[0].input)


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with (
        serve_simulator(SimulatorSettings()) as url,
        anthropic.AsyncAnthropic(base_url=url, api_key="sim", max_retries=0) as api,
    ):
        yield api


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE_REPO, tmp_path / "repo", ignore=shutil.ignore_patterns("__pycache__")))


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_full_job_on_sample_repo(client: anthropic.AsyncAnthropic, sample_copy: Path, stream: bool) -> None:
    answers = await play_job(client, RepoTools(sample_copy), stream=stream)

    calls = [tool_call(message) for message in answers]
    assert [name for name, _ in calls] == [
        "list_files",
        "search_code",
        "read_file",
        "read_file",
        "write_file",
        "edit_file",
        "edit_file",
        "finish",
    ]
    assert calls[0][1] == {"path": "."}
    assert calls[1][1] == {"query": "def ", "file_type": "py"}
    assert calls[2][1] == {"path": "api/app.py"}
    assert calls[3][1] == {"path": "api/storage.py"}
    assert calls[4][1]["path"] == "api/errors.py"
    assert calls[5][1] == {
        "path": "api/app.py",
        "old_string": "from .storage import Storage",
        "new_string": "from .errors import handle_errors\nfrom .storage import Storage",
    }
    assert calls[6][1]["old_string"] == "def get_item(storage: Storage, item_id: str) -> Response:"
    assert calls[6][1]["new_string"] == "@handle_errors\ndef get_item(storage: Storage, item_id: str) -> Response:"
    assert calls[7][1]["summary"].startswith("Added `api/errors.py` with an `ApiError` exception")
    assert "applied `@handle_errors` to `get_item`" in calls[7][1]["summary"]
    for message in answers:
        assert [block.type for block in message.content] == ["text", "tool_use"]
        assert message.stop_reason == "tool_use"

    for path in sorted(sample_copy.rglob("*.py")):
        compile(path.read_text(), str(path), "exec")
    assert "@handle_errors\ndef get_item(" in (sample_copy / "api" / "app.py").read_text()


async def test_edited_sample_answers_404(client: anthropic.AsyncAnthropic, sample_copy: Path) -> None:
    await play_job(client, RepoTools(sample_copy))
    probe = (
        "import json\n"
        "from api.app import get_item\n"
        "from api.storage import Storage\n"
        "print(json.dumps([get_item(Storage(), '7'), get_item(Storage(), 'seven')]))\n"
    )

    checked = subprocess.run([sys.executable, "-c", probe], cwd=sample_copy, capture_output=True, text=True, timeout=30)
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests"],
        cwd=sample_copy,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == [
        [404, {"error": "not found: 7"}],
        [400, {"error": "invalid request: invalid literal for int() with base 10: 'seven'"}],
    ]
    assert tests.returncode == 0, tests.stderr


async def test_job_replay_gives_same_tool_use_ids(client: anthropic.AsyncAnthropic, tmp_path: Path) -> None:
    first_repo = Path(shutil.copytree(SAMPLE_REPO, tmp_path / "first", ignore=shutil.ignore_patterns("__pycache__")))
    second_repo = Path(shutil.copytree(SAMPLE_REPO, tmp_path / "second", ignore=shutil.ignore_patterns("__pycache__")))

    first = await play_job(client, RepoTools(first_repo))
    second = await play_job(client, RepoTools(second_repo))

    assert [message.model_dump() for message in first] == [message.model_dump() for message in second]
    ids = [block.id for message in first for block in message.content if block.type == "tool_use"]
    assert len(set(ids)) == len(ids) == 8


async def test_repo_without_python_writes_new_module(client: anthropic.AsyncAnthropic, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Notes\n")
    (tmp_path / "index.js").write_text("console.log('hi')\n")

    answers = await play_job(client, RepoTools(tmp_path))

    calls = [tool_call(message) for message in answers]
    assert [name for name, _ in calls] == ["list_files", "search_code", "write_file", "finish"]
    assert calls[2][1]["path"] == "errors.py"
    compile((tmp_path / "errors.py").read_text(), "errors.py", "exec")
    assert "I found no Python module to wire it into" in calls[3][1]["summary"]


class FailingTools(RepoTools):
    """Tools that fail for the names given, the way a broken checkout or a denied path would."""

    def __init__(self, root: Path, failing: Callable[[str, dict[str, Any]], bool]) -> None:
        super().__init__(root)
        self.failing = failing

    def run(self, name: str, tool_input: dict[str, Any]) -> tuple[str, bool]:
        if self.failing(name, tool_input):
            return f"[error] {name} is not permitted here", True
        return super().run(name, tool_input)


async def test_every_tool_failing_still_finishes(client: anthropic.AsyncAnthropic, sample_copy: Path) -> None:
    answers = await play_job(client, FailingTools(sample_copy, lambda name, tool_input: True))

    calls = [tool_call(message) for message in answers]
    assert [name for name, _ in calls] == ["list_files", "search_code", "write_file", "finish"]
    assert calls[-1][1]["summary"] == (
        "I could not write `errors.py` ([error] write_file is not permitted here), so no file was changed."
    )


async def test_unreadable_main_module_falls_back(client: anthropic.AsyncAnthropic, sample_copy: Path) -> None:
    tools = FailingTools(sample_copy, lambda name, tool_input: tool_input.get("path") == "api/app.py")

    answers = await play_job(client, tools)

    calls = [tool_call(message) for message in answers]
    assert [name for name, _ in calls] == [
        "list_files",
        "search_code",
        "read_file",
        "read_file",
        "read_file",
        "write_file",
        "edit_file",
        "edit_file",
        "finish",
    ]
    assert calls[2] == ("read_file", {"path": "api/app.py"})
    assert calls[3] == ("read_file", {"path": "api/storage.py"})
    assert calls[7][1]["new_string"] == "    @handle_errors\n    def get(self, item_id: int) -> Item:"
    for path in sorted(sample_copy.rglob("*.py")):
        compile(path.read_text(), str(path), "exec")


async def test_failed_import_edit_skips_decorator(client: anthropic.AsyncAnthropic, sample_copy: Path) -> None:
    tools = FailingTools(sample_copy, lambda name, tool_input: name == "edit_file")

    answers = await play_job(client, tools)

    calls = [tool_call(message) for message in answers]
    assert [name for name, _ in calls][-3:] == ["write_file", "edit_file", "finish"]
    assert calls[-1][1]["summary"].endswith(
        "Importing it in `api/app.py` failed ([error] edit_file is not permitted here), so the handlers are unchanged."
    )


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [TASK]
    for index in range(turns):
        tool_use_id = f"toolu_{index}"
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Listing."},
                    {"type": "tool_use", "id": tool_use_id, "name": "list_files", "input": {}},
                ],
            }
        )
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "[error] no"}]}
        )
    return messages


@pytest.mark.parametrize("turn", [9, 10, 15])
def test_turn_after_eight_finishes(turn: int) -> None:
    step = next_step({"model": MODEL, "max_tokens": 10, "tools": TOOLS, "messages": conversation(turn - 1)})

    assert step.tool_name == "finish"
    assert step.tool_input["summary"]


def test_missing_tool_gives_text_only_step() -> None:
    offered = [tool for tool in TOOLS if tool["name"] != "search_code"]

    step = next_step({"model": MODEL, "max_tokens": 10, "tools": offered, "messages": conversation(1)})

    assert step.tool_name is None
    assert (
        step.text
        == "I need the `search_code` tool for the next step, but this request does not offer it, so I'll stop here."
    )


def test_file_text_strips_line_number_gutter() -> None:
    source = "import os\n\n\ndef main() -> None:\n    print(os.getcwd())\n"
    numbered = "".join(f"{number:6d}\t{line}\n" for number, line in enumerate(source.splitlines(), start=1))
    arrows = "".join(f"{number:>4}→{line}\n" for number, line in enumerate(source.splitlines(), start=1))

    assert file_text(numbered) == source
    assert file_text(arrows) == source
    assert file_text(source) == source
    assert file_text("1: first\n3: third\n") == "1: first\n3: third\n"


def test_search_hits_read_grouped_and_grep_layouts() -> None:
    grep_layout = "api/app.py:3:def a():\n./api/app.py:9:def b():\napi/store.py:1:def c():\n"
    grouped_layout = "api/app.py\n  3: def a():\n  9: def b():\n\napi/store.py:\n  1: def c():\n"

    assert search_hits(grep_layout) == {"api/app.py": 2, "api/store.py": 1}
    assert search_hits(grouped_layout) == {"api/app.py": 2, "api/store.py": 1}


MULTILINE_MODULE = '''"""Docstring that mentions from x import y."""

from __future__ import annotations

import os
from typing import (
    Any,
)

from .models import Thing
from .views import render


@decorator
def _private() -> None:
    pass


def main() -> None:
    pass


class Handler:
    def __init__(self) -> None:
        pass

    def fetch_thing(self, key: str) -> Any:
        return os.environ[key]


def create_thing(payload: dict[str, Any]) -> Thing:
    return Thing(**payload)
'''


def test_import_edit_keeps_sorted_valid_module() -> None:
    edit = import_edit(MULTILINE_MODULE, "from .errors import handle_errors")

    assert edit is not None
    assert edit.old_string == "from .models import Thing"
    assert edit.new_string == "from .errors import handle_errors\nfrom .models import Thing"
    ast.parse(MULTILINE_MODULE.replace(edit.old_string, edit.new_string))


def test_import_edit_after_multiline_import() -> None:
    source = "import os\nfrom typing import (\n    Any,\n)\n\n\ndef run(value: Any) -> None:\n    os.getcwd()\n"

    edit = import_edit(source, "from errors import handle_errors")

    assert edit is not None
    assert edit.old_string == "import os"
    ast.parse(source.replace(edit.old_string, edit.new_string))


def test_decorator_edit_prefers_top_level_handler() -> None:
    chosen = decorator_edit(MULTILINE_MODULE)

    assert chosen is not None
    name, edit = chosen
    assert name == "create_thing"
    assert edit.new_string == "@handle_errors\ndef create_thing(payload: dict[str, Any]) -> Thing:"


def test_decorator_edit_falls_back_to_method() -> None:
    source = "class Handler:\n    def fetch_thing(self, key: str) -> str:\n        return key\n"

    chosen = decorator_edit(source)

    assert chosen is not None
    assert chosen[0] == "fetch_thing"
    assert chosen[1].new_string == "    @handle_errors\n    def fetch_thing(self, key: str) -> str:"


def test_edits_skip_unparsable_source() -> None:
    assert import_edit("def broken(:\n", "from errors import handle_errors") is None
    assert decorator_edit("def broken(:\n") is None
