"""Tests of the agent's tools over a real workspace directory."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.events import FileChange
from services.runner.paths import PathInGitDirectoryError, PathOutsideWorkspaceError
from services.runner.tools import MAX_SEARCH_HITS, TOOL_DEFINITIONS, ToolOutcome, Workspace

OUTSIDE_SUFFIX = "is outside the workspace; use a relative path inside the workspace, such as 'src/main.py'"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    (workspace / "src" / "pkg").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("import os\n\ndef main():\n    print('hello')\n")
    (workspace / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'hello'\n")
    (workspace / "README.md").write_text("# Demo\nSay hello.\n")
    (workspace / ".git").mkdir()
    (workspace / ".git" / "config").write_text("url = https://token@example.com/repo hello\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("SECRET hello\n")
    return workspace


@pytest.fixture
def workspace(root: Path) -> Workspace:
    return Workspace(root)


def error(workspace: Workspace, name: str, tool_input: object) -> str:
    outcome = workspace.run_tool(name, tool_input)
    assert outcome.is_error, outcome.content
    assert not outcome.finished
    return outcome.content


def ok(workspace: Workspace, name: str, tool_input: object) -> str:
    outcome = workspace.run_tool(name, tool_input)
    assert not outcome.is_error, outcome.content
    return outcome.content


def tree(root: Path) -> dict[str, str | bytes | None]:
    """Map each path under `root` to its bytes, its link target for a symlink, or None for a directory."""
    files: dict[str, str | bytes | None] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                files[relative] = os.readlink(path)
            elif path.is_dir():
                files[relative + "/"] = None
            else:
                files[relative] = path.read_bytes()
    return files


# Tool definitions


def test_definitions_name_six_tools() -> None:
    names = [tool["name"] for tool in TOOL_DEFINITIONS]

    assert names == ["list_files", "read_file", "search_code", "edit_file", "write_file", "finish"]


@pytest.mark.parametrize(
    ("name", "properties", "required"),
    [
        ("list_files", {"path": "string"}, []),
        ("read_file", {"path": "string", "start_line": "integer", "end_line": "integer"}, ["path"]),
        ("search_code", {"query": "string", "file_type": "string"}, ["query"]),
        (
            "edit_file",
            {"path": "string", "old_string": "string", "new_string": "string"},
            ["path", "old_string", "new_string"],
        ),
        ("write_file", {"path": "string", "content": "string"}, ["path", "content"]),
        ("finish", {"summary": "string"}, ["summary"]),
    ],
)
def test_definitions_schemas(name: str, properties: dict[str, str], required: list[str]) -> None:
    tool = next(tool for tool in TOOL_DEFINITIONS if tool["name"] == name)
    schema = tool["input_schema"]

    assert set(tool) == {"name", "description", "input_schema"}
    assert tool["description"]
    assert schema["type"] == "object"
    assert {key: value["type"] for key, value in schema["properties"].items()} == properties
    assert schema["required"] == required
    assert all(value["description"] for value in schema["properties"].values())


def test_definitions_encode_as_json() -> None:
    decoded = msgspec.json.decode(msgspec.json.encode(TOOL_DEFINITIONS))

    assert decoded == TOOL_DEFINITIONS


@pytest.mark.parametrize(
    ("name", "tool_input", "field", "expected"),
    [
        ("read_file", {}, "path", "string"),
        ("search_code", {"file_type": "py"}, "query", "string"),
        ("edit_file", {"path": "a", "old_string": "x"}, "new_string", "string"),
        ("write_file", {"path": "a"}, "content", "string"),
        ("finish", {}, "summary", "string"),
    ],
)
def test_missing_required_field(
    workspace: Workspace, name: str, tool_input: dict[str, Any], field: str, expected: str
) -> None:
    message = error(workspace, name, tool_input)

    assert message == f"{name} input is missing the required field `{field}` ({expected}); call {name} again with it"


@pytest.mark.parametrize(
    ("name", "tool_input", "detail"),
    [
        ("read_file", {"path": 3}, "Expected `str`, got `int` - at `$.path`"),
        (
            "read_file",
            {"path": "a", "start_line": "1"},
            "Expected `int | null`, got `str` - at `$.start_line`",
        ),
        ("read_file", {"path": "a", "end_line": True}, "Expected `int | null`, got `bool` - at `$.end_line`"),
        ("list_files", "src", "Expected `object`, got `str`"),
        ("list_files", None, "Expected `object`, got `null`"),
        (
            "write_file",
            {"file_path": "a", "path": "a", "content": ""},
            "Object contains unknown field `file_path`",
        ),
        ("finish", {"summary": ["done"]}, "Expected `str`, got `array` - at `$.summary`"),
    ],
)
def test_ill_typed_input(workspace: Workspace, name: str, tool_input: object, detail: str) -> None:
    message = error(workspace, name, tool_input)

    assert message == f"invalid {name} input: {detail}; call {name} again with that fixed"


def test_unknown_tool(workspace: Workspace) -> None:
    message = error(workspace, "delete_file", {"path": "a"})

    assert message == (
        "unknown tool 'delete_file'; use one of: list_files, read_file, search_code, edit_file, write_file, finish"
    )


def test_workspace_rejects_tiny_output_cap(root: Path) -> None:
    with pytest.raises(ValueError, match="max_output_bytes is 100; it must be at least 1024"):
        Workspace(root, max_output_bytes=100)


# list_files


def test_list_files_whole_tree(workspace: Workspace) -> None:
    listing = ok(workspace, "list_files", {})

    assert listing.split("\n") == ["README.md", "src/", "src/app.py", "src/pkg/", "src/pkg/util.py"]


def test_list_files_subdirectory(workspace: Workspace) -> None:
    assert ok(workspace, "list_files", {"path": "src/pkg"}) == "src/pkg/util.py"
    assert ok(workspace, "list_files", {"path": "./src/"}).split("\n") == [
        "src/app.py",
        "src/pkg/",
        "src/pkg/util.py",
    ]


def test_list_files_sorts_dirs_before_siblings(root: Path, workspace: Workspace) -> None:
    (root / "a").mkdir()
    (root / "a" / "z.txt").write_text("")
    (root / "a-b.txt").write_text("")

    listing = ok(workspace, "list_files", {"path": "."}).split("\n")

    assert listing[:3] == ["README.md", "a-b.txt", "a/"]
    assert listing[3] == "a/z.txt"


def test_list_files_symlinks(root: Path, workspace: Workspace) -> None:
    os.symlink("/", root / "slash")
    os.symlink(root.parent / "outside", root / "outside-dir")
    os.symlink("/nonexistent/target", root / "dangling-out")
    os.symlink("src/pkg", root / "pkg-alias")
    os.symlink("missing.txt", root / "dangling-in")

    listing = ok(workspace, "list_files", {}).split("\n")

    assert "pkg-alias/" in listing
    assert "dangling-in" in listing
    assert not any(line.startswith(("slash", "outside-dir", "dangling-out", "pkg-alias/util")) for line in listing)


def test_list_files_empty_directory(root: Path, workspace: Workspace) -> None:
    (root / "empty").mkdir()

    assert ok(workspace, "list_files", {"path": "empty"}) == "[directory 'empty' is empty]"


def test_list_files_errors(workspace: Workspace) -> None:
    assert error(workspace, "list_files", {"path": "nope"}) == (
        "directory 'nope' not found; use list_files on '.' to see the tree"
    )
    assert error(workspace, "list_files", {"path": "README.md"}) == (
        "'README.md' is a file, not a directory; use read_file to read it"
    )
    assert error(workspace, "list_files", {"path": "../outside"}) == f"path '../outside' {OUTSIDE_SUFFIX}"
    assert error(workspace, "list_files", {"path": ".git"}) == (
        "path '.git' is inside a .git directory, which the tools neither read nor change; use a path outside .git"
    )


def test_list_files_truncates_long_listing(root: Path) -> None:
    for index in range(3000):
        (root / f"file-{index:05d}-with-a-rather-long-name.txt").write_text("")
    workspace = Workspace(root, max_output_bytes=4096)

    listing = ok(workspace, "list_files", {})

    assert len(listing.encode()) <= 4096
    assert listing.endswith(" bytes; use list_files on a subdirectory to see the rest]")
    assert "\n[output truncated: showed " in listing


# read_file


def test_read_file_whole(workspace: Workspace) -> None:
    content = ok(workspace, "read_file", {"path": "src/app.py"})

    assert content == "     1\timport os\n     2\t\n     3\tdef main():\n     4\t    print('hello')\n"


def test_read_file_line_range(workspace: Workspace) -> None:
    assert ok(workspace, "read_file", {"path": "src/app.py", "start_line": 3, "end_line": 3}) == "     3\tdef main():\n"
    assert ok(workspace, "read_file", {"path": "src/app.py", "start_line": 4}) == "     4\t    print('hello')\n"
    assert ok(workspace, "read_file", {"path": "src/app.py", "end_line": 1}) == "     1\timport os\n"
    assert ok(workspace, "read_file", {"path": "src/app.py", "start_line": 4, "end_line": 99}) == (
        "     4\t    print('hello')\n"
    )


def test_read_file_keeps_crlf_and_last_line(root: Path, workspace: Workspace) -> None:
    (root / "dos.txt").write_bytes("one\r\ntwo ünïcode".encode())

    assert ok(workspace, "read_file", {"path": "dos.txt"}) == "     1\tone\r\n     2\ttwo ünïcode"


def test_read_file_empty(root: Path, workspace: Workspace) -> None:
    (root / "empty.txt").write_text("")

    assert ok(workspace, "read_file", {"path": "empty.txt"}) == "[file 'empty.txt' is empty]"
    assert ok(workspace, "read_file", {"path": "empty.txt", "start_line": 1}) == "[file 'empty.txt' is empty]"


def test_read_file_through_symlink_inside(root: Path, workspace: Workspace) -> None:
    os.symlink("src/pkg/util.py", root / "util-alias.py")

    assert ok(workspace, "read_file", {"path": "util-alias.py", "end_line": 1}) == "     1\tdef helper():\n"


def test_read_file_line_errors(workspace: Workspace) -> None:
    assert error(workspace, "read_file", {"path": "src/app.py", "start_line": 0}) == (
        "start_line 0 is invalid; lines are numbered from 1"
    )
    assert error(workspace, "read_file", {"path": "src/app.py", "start_line": 3, "end_line": 2}) == (
        "end_line 2 is before start_line 3; send an end_line of at least start_line, or leave it out to read to the end"
    )
    assert error(workspace, "read_file", {"path": "src/app.py", "start_line": 5}) == (
        "start_line 5 is past the end of 'src/app.py', which has 4 lines"
    )


def test_read_file_file_errors(root: Path, workspace: Workspace) -> None:
    (root / "latin1.txt").write_bytes(b"ok\ncaf\xe9\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    assert error(workspace, "read_file", {"path": "nope.py"}) == (
        "file 'nope.py' not found; use list_files to see which files exist"
    )
    assert error(workspace, "read_file", {"path": "src"}) == "'src' is a directory; use list_files to see its files"
    assert error(workspace, "read_file", {"path": ""}) == "'' is a directory; use list_files to see its files"
    assert error(workspace, "read_file", {"path": "latin1.txt"}) == (
        "'latin1.txt' is not UTF-8 text (invalid byte on line 2); read_file shows only UTF-8 text files"
    )
    assert ok(workspace, "read_file", {"path": "latin1.txt", "end_line": 1}) == "     1\tok\n"
    assert error(workspace, "read_file", {"path": "image.png"}) == (
        "'image.png' is a binary file; read_file shows only UTF-8 text"
    )


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "../outside/secret.txt",
        "slash/etc/passwd",
        "out/secret.txt",
        "dangling",
    ],
)
def test_read_file_escapes_read_nothing(root: Path, workspace: Workspace, path: str) -> None:
    os.symlink("/", root / "slash")
    os.symlink(root.parent / "outside", root / "out")
    os.symlink(root.parent / "outside" / "secret.txt", root / "dangling")

    message = error(workspace, "read_file", {"path": path})

    assert message == f"path {path!r} {OUTSIDE_SUFFIX}"
    assert "SECRET" not in message


def test_read_file_git_directory(workspace: Workspace) -> None:
    message = error(workspace, "read_file", {"path": ".git/config"})

    assert message == (
        "path '.git/config' is inside a .git directory, which the tools neither read nor change; "
        "use a path outside .git"
    )


def test_read_file_two_megabytes_truncated(root: Path, workspace: Workspace) -> None:
    line = "x" * 63 + "\n"
    (root / "big.txt").write_text(line * (2 * 1024 * 1024 // len(line)))

    started = time.perf_counter()
    content = ok(workspace, "read_file", {"path": "big.txt"})
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert len(content.encode()) <= 32 * 1024
    assert content.startswith("     1\t" + line)
    assert content.endswith(
        "\n[output truncated at 32768 bytes: showed lines 1-457; use read_file with start_line=458 to read on]"
    )


def test_read_file_continues_from_note(root: Path, workspace: Workspace) -> None:
    (root / "big.txt").write_text("".join(f"line {index}\n" for index in range(1, 20001)))

    content = ok(workspace, "read_file", {"path": "big.txt", "start_line": 10000})

    assert content.startswith(" 10000\tline 10000\n 10001\tline 10001\n")
    assert content.endswith(
        "\n[output truncated at 32768 bytes: showed lines 10000-11805; use read_file with start_line=11806 to read on]"
    )
    assert len(content.encode()) <= 32 * 1024


def test_read_file_single_huge_line_cut(root: Path, workspace: Workspace) -> None:
    (root / "min.js").write_text("é" * (1024 * 1024))

    started = time.perf_counter()
    content = ok(workspace, "read_file", {"path": "min.js"})
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert len(content.encode()) <= 32 * 1024
    assert content.startswith("     1\téé")
    assert content.endswith(
        "é\n[output truncated at 32768 bytes: line 1 alone is longer, so it was cut; "
        "use search_code to find text in it]"
    )


# search_code


def test_search_code_sorted_hits(workspace: Workspace) -> None:
    result = ok(workspace, "search_code", {"query": "hello"})

    assert result == "README.md:2: Say hello.\nsrc/app.py:4:     print('hello')\nsrc/pkg/util.py:2:     return 'hello'"


def test_search_code_case_sensitive_and_plain(root: Path, workspace: Workspace) -> None:
    (root / "notes.txt").write_text("Hello\nhe.lo\nhello\n")

    assert ok(workspace, "search_code", {"query": "Hello"}) == "notes.txt:1: Hello"
    assert ok(workspace, "search_code", {"query": "he.lo"}) == "notes.txt:2: he.lo"


def test_search_code_file_type(workspace: Workspace) -> None:
    expected = "src/app.py:4:     print('hello')\nsrc/pkg/util.py:2:     return 'hello'"

    assert ok(workspace, "search_code", {"query": "hello", "file_type": "py"}) == expected
    assert ok(workspace, "search_code", {"query": "hello", "file_type": ".py"}) == expected
    assert ok(workspace, "search_code", {"query": "hello", "file_type": "md"}) == "README.md:2: Say hello."


def test_search_code_skips_binary_git_and_outside(root: Path, workspace: Workspace) -> None:
    (root / "blob.bin").write_bytes(b"hello\x00world")
    (root / "latin1.txt").write_bytes(b"hello caf\xe9")
    os.symlink("/", root / "slash")
    os.symlink(root.parent / "outside", root / "out")
    os.symlink("README.md", root / "readme-alias.md")

    result = ok(workspace, "search_code", {"query": "hello"})

    assert result.split("\n") == [
        "README.md:2: Say hello.",
        "src/app.py:4:     print('hello')",
        "src/pkg/util.py:2:     return 'hello'",
    ]
    assert ok(workspace, "search_code", {"query": "SECRET"}) == "[no lines contain 'SECRET']"
    assert ok(workspace, "search_code", {"query": "token"}) == "[no lines contain 'token']"


def test_search_code_no_hits(workspace: Workspace) -> None:
    assert ok(workspace, "search_code", {"query": "absent"}) == "[no lines contain 'absent']"
    assert (
        ok(workspace, "search_code", {"query": "hello", "file_type": "rs"}) == "[no lines contain 'hello' in .rs files]"
    )


def test_search_code_cuts_long_lines(root: Path, workspace: Workspace) -> None:
    (root / "long.txt").write_text("needle" + "x" * 1000 + "\r\n")

    result = ok(workspace, "search_code", {"query": "needle"})

    assert result == "long.txt:1: needle" + "x" * 294 + " [line cut]"


def test_search_code_query_errors(workspace: Workspace) -> None:
    assert error(workspace, "search_code", {"query": ""}) == "query is empty; send the text to search for"
    assert error(workspace, "search_code", {"query": "a\nb"}) == (
        "query contains a line break; search_code matches text within one line"
    )


def test_search_code_five_thousand_hits(root: Path, workspace: Workspace) -> None:
    (root / "many.txt").write_text("".join(f"needle {index}\n" for index in range(5000)))

    started = time.perf_counter()
    result = ok(workspace, "search_code", {"query": "needle"})
    elapsed = time.perf_counter() - started

    lines = result.split("\n")
    assert elapsed < 1.0
    assert len(result.encode()) <= 32 * 1024
    assert len(lines) == MAX_SEARCH_HITS + 1
    assert lines[0] == "many.txt:1: needle 0"
    assert lines[MAX_SEARCH_HITS - 1] == "many.txt:500: needle 499"
    assert lines[-1] == (
        "[search found 5000 matching lines and showed the first 500; use a longer query or file_type to narrow it]"
    )


def test_search_code_hits_over_byte_cap(root: Path, workspace: Workspace) -> None:
    for index in range(50):
        (root / f"file{index:02d}.txt").write_text("".join(f"needle {'y' * 200}\n" for _ in range(100)))

    started = time.perf_counter()
    result = ok(workspace, "search_code", {"query": "needle"})
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert len(result.encode()) <= 32 * 1024
    assert result.startswith("file00.txt:1: needle yyy")
    assert " bytes; use a longer query or file_type to narrow the search]\n" in result
    assert result.endswith(
        "[search found 5000 matching lines and showed the first 500; use a longer query or file_type to narrow it]"
    )


# edit_file


def test_edit_file_replaces_once(root: Path, workspace: Workspace) -> None:
    message = ok(
        workspace,
        "edit_file",
        {"path": "src/app.py", "old_string": "print('hello')", "new_string": "print('bye')"},
    )

    assert message == "Edited src/app.py: replaced the text at line 4."
    assert (root / "src" / "app.py").read_text() == "import os\n\ndef main():\n    print('bye')\n"


def test_edit_file_match_count_errors(root: Path, workspace: Workspace) -> None:
    before = (root / "src" / "app.py").read_text()

    assert error(workspace, "edit_file", {"path": "src/app.py", "old_string": "absent", "new_string": "x"}) == (
        "old_string was not found in 'src/app.py'; read the file again and copy the text exactly, "
        "whitespace and indentation included"
    )
    assert error(workspace, "edit_file", {"path": "src/app.py", "old_string": "i", "new_string": "x"}) == (
        "old_string matches 3 places in 'src/app.py'; "
        "add surrounding lines to old_string so that it matches exactly one"
    )
    assert (root / "src" / "app.py").read_text() == before
    assert workspace.take_changes() == []


def test_edit_file_overlapping_matches(root: Path, workspace: Workspace) -> None:
    (root / "dots.txt").write_text("aaa")

    message = error(workspace, "edit_file", {"path": "dots.txt", "old_string": "aa", "new_string": "b"})

    assert message == (
        "old_string matches 2 places in 'dots.txt'; add surrounding lines to old_string so that it matches exactly one"
    )
    assert (root / "dots.txt").read_text() == "aaa"


def test_edit_file_input_errors(root: Path, workspace: Workspace) -> None:
    (root / "latin1.txt").write_bytes(b"caf\xe9")

    assert error(workspace, "edit_file", {"path": "src/app.py", "old_string": "", "new_string": "x"}) == (
        "old_string is empty; send the exact text to replace, or use write_file"
    )
    assert error(workspace, "edit_file", {"path": "src/app.py", "old_string": "os", "new_string": "os"}) == (
        "old_string and new_string are the same, so the edit would change nothing"
    )
    assert error(workspace, "edit_file", {"path": "nope.py", "old_string": "a", "new_string": "b"}) == (
        "file 'nope.py' not found; use list_files to see which files exist"
    )
    assert error(workspace, "edit_file", {"path": "src", "old_string": "a", "new_string": "b"}) == (
        "'src' is a directory; use list_files to see its files"
    )
    assert error(workspace, "edit_file", {"path": "latin1.txt", "old_string": "caf", "new_string": "b"}) == (
        "'latin1.txt' is not UTF-8 text; edit_file edits only UTF-8 files"
    )


def test_edit_file_escape_changes_nothing(root: Path, workspace: Workspace) -> None:
    os.symlink(root.parent / "outside" / "secret.txt", root / "secret")

    message = error(workspace, "edit_file", {"path": "secret", "old_string": "SECRET", "new_string": "x"})

    assert message == f"path 'secret' {OUTSIDE_SUFFIX}"
    assert (root.parent / "outside" / "secret.txt").read_text() == "SECRET hello\n"


def test_edit_file_over_size_limit(root: Path) -> None:
    workspace = Workspace(root, max_file_bytes=100)

    message = error(workspace, "edit_file", {"path": "src/app.py", "old_string": "os", "new_string": "o" * 100})

    assert message == (
        "the new content of 'src/app.py' is 140 bytes, over the limit of 100 bytes per file; "
        "split it into smaller files"
    )
    assert (root / "src" / "app.py").read_text().startswith("import os\n")


# write_file


def test_write_file_creates_and_overwrites(root: Path, workspace: Workspace) -> None:
    assert ok(workspace, "write_file", {"path": "docs/new/guide.md", "content": "# Guide ✓\n"}) == (
        "Created docs/new/guide.md (12 bytes)."
    )
    assert ok(workspace, "write_file", {"path": "README.md", "content": ""}) == "Overwrote README.md (0 bytes)."
    assert (root / "docs" / "new" / "guide.md").read_text() == "# Guide ✓\n"
    assert (root / "README.md").read_bytes() == b""


def test_write_file_keeps_line_endings(root: Path, workspace: Workspace) -> None:
    ok(workspace, "write_file", {"path": "dos.txt", "content": "a\r\nb\r\n"})

    assert (root / "dos.txt").read_bytes() == b"a\r\nb\r\n"


def test_write_file_errors(root: Path, workspace: Workspace) -> None:
    assert error(workspace, "write_file", {"path": "src", "content": "x"}) == (
        "'src' is a directory; write_file needs a file path"
    )
    assert error(workspace, "write_file", {"path": ".", "content": "x"}) == (
        "'.' is a directory; write_file needs a file path"
    )
    assert error(workspace, "write_file", {"path": "README.md/child.txt", "content": "x"}) == (
        "cannot create the directories of 'README.md/child.txt' because one of its parents is a f"
        "ile; choose another path"
    )
    assert error(workspace, "write_file", {"path": ".git/hooks/pre-commit", "content": "x"}) == (
        "path '.git/hooks/pre-commit' is inside a .git directory, which the tools neither read nor change; "
        "use a path outside .git"
    )
    assert not (root / ".git" / "hooks").exists()


@pytest.mark.parametrize(
    "path", ["../escape.txt", "/tmp/escape.txt", "out/escape.txt", "slash/tmp/escape.txt", "dangling"]
)
def test_write_file_escapes_write_nothing(root: Path, workspace: Workspace, path: str) -> None:
    os.symlink("/", root / "slash")
    os.symlink(root.parent / "outside", root / "out")
    os.symlink(root.parent / "outside" / "escape.txt", root / "dangling")
    before = tree(root.parent)

    message = error(workspace, "write_file", {"path": path, "content": "x"})

    assert message == f"path {path!r} {OUTSIDE_SUFFIX}"
    assert tree(root.parent) == before
    assert workspace.take_changes() == []


def test_write_file_over_size_limit(root: Path) -> None:
    workspace = Workspace(root, max_file_bytes=10)

    message = error(workspace, "write_file", {"path": "deep/dir/big.txt", "content": "ü" * 6})

    assert message == (
        "the new content of 'deep/dir/big.txt' is 12 bytes, over the limit of 10 bytes per file; "
        "split it into smaller files"
    )
    assert not (root / "deep").exists()


# finish


def test_finish_returns_summary(workspace: Workspace) -> None:
    outcome = workspace.run_tool("finish", {"summary": "Fixed the greeting."})

    assert outcome == ToolOutcome(content="Finished.", finished=True, summary="Fixed the greeting.")


def test_finish_rejects_empty_summary(workspace: Workspace) -> None:
    message = error(workspace, "finish", {"summary": "  "})

    assert message == "summary is empty; say what was done, or why the task could not be done"


# Output cap on error messages


def test_long_error_message_capped(root: Path) -> None:
    workspace = Workspace(root, max_output_bytes=1024)

    message = error(workspace, "x" * 5000, {})

    assert len(message.encode()) <= 1024
    assert message.startswith("unknown tool 'xxx")
    assert message.endswith(" bytes; send a shorter input]")


def test_os_error_becomes_tool_error(workspace: Workspace) -> None:
    message = error(workspace, "read_file", {"path": "x" * 5000})

    assert message == "read_file failed: File name too long; try another path"


# take_changes and apply_changes


def test_take_changes_after_write_and_edit(root: Path, workspace: Workspace) -> None:
    ok(workspace, "write_file", {"path": "b.txt", "content": "one"})
    ok(workspace, "write_file", {"path": "a.txt", "content": "first"})
    ok(workspace, "edit_file", {"path": "b.txt", "old_string": "one", "new_string": "two"})
    ok(workspace, "edit_file", {"path": "./src//app.py", "old_string": "import os\n", "new_string": ""})

    assert workspace.take_changes() == [
        FileChange(path="a.txt", content="first"),
        FileChange(path="b.txt", content="two"),
        FileChange(path="src/app.py", content="\ndef main():\n    print('hello')\n"),
    ]
    assert workspace.take_changes() == []


def test_take_changes_reports_restored_file(root: Path, workspace: Workspace) -> None:
    original = (root / "README.md").read_text()
    ok(workspace, "write_file", {"path": "README.md", "content": "changed"})
    ok(workspace, "write_file", {"path": "README.md", "content": original})

    assert workspace.take_changes() == [FileChange(path="README.md", content=original)]


def test_take_changes_after_repeat(workspace: Workspace) -> None:
    ok(workspace, "write_file", {"path": "a.txt", "content": "1"})
    assert workspace.take_changes() == [FileChange(path="a.txt", content="1")]

    ok(workspace, "write_file", {"path": "a.txt", "content": "2"})
    ok(workspace, "write_file", {"path": "a.txt", "content": "3"})
    assert workspace.take_changes() == [FileChange(path="a.txt", content="3")]


def test_take_changes_reports_symlink_target(root: Path, workspace: Workspace) -> None:
    os.symlink("src/pkg/util.py", root / "alias.py")

    ok(workspace, "write_file", {"path": "alias.py", "content": "x = 1\n"})

    assert workspace.take_changes() == [FileChange(path="src/pkg/util.py", content="x = 1\n")]
    assert (root / "alias.py").is_symlink()


def test_take_changes_reports_deleted_file(root: Path, workspace: Workspace) -> None:
    ok(workspace, "write_file", {"path": "tmp.txt", "content": "x"})
    (root / "tmp.txt").unlink()

    assert workspace.take_changes() == [FileChange(path="tmp.txt", content=None)]


def test_take_changes_ignores_reads_and_failures(workspace: Workspace) -> None:
    ok(workspace, "read_file", {"path": "README.md"})
    ok(workspace, "search_code", {"query": "hello"})
    error(workspace, "edit_file", {"path": "README.md", "old_string": "absent", "new_string": "x"})

    assert workspace.take_changes() == []


def test_apply_changes_writes_and_deletes(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    replay = Workspace(copy)

    replay.apply_changes(
        [
            FileChange(path="new/dir/file.txt", content="new ✓"),
            FileChange(path="README.md", content=None),
            FileChange(path="never-existed.txt", content=None),
            FileChange(path="src/app.py", content="pass\n"),
        ]
    )

    assert (copy / "new" / "dir" / "file.txt").read_text() == "new ✓"
    assert not (copy / "README.md").exists()
    assert (copy / "src" / "app.py").read_text() == "pass\n"
    assert replay.take_changes() == []


@pytest.mark.parametrize("path", ["../escape.txt", "/tmp/escape.txt", "slash/tmp/escape.txt"])
def test_apply_changes_rejects_escape(root: Path, path: str) -> None:
    os.symlink("/", root / "slash")
    workspace = Workspace(root)

    with pytest.raises(PathOutsideWorkspaceError) as caught:
        workspace.apply_changes([FileChange(path=path, content="x")])

    assert caught.value.path == path
    assert not (root.parent / "escape.txt").exists()


def test_apply_changes_rejects_git(workspace: Workspace, root: Path) -> None:
    with pytest.raises(PathInGitDirectoryError):
        workspace.apply_changes([FileChange(path=".git/config", content="x")])

    assert "token" in (root / ".git" / "config").read_text()


ORIGINAL_TREE = {"a.txt": "alpha\nbeta\n", "src/b.py": "def b():\n    return 'b'\n"}
PATHS = ["a.txt", "src/b.py", "src/deep/c.md", "new.txt", "a.txt/child", "./src/../new.txt"]
TEXT = st.text(alphabet="ab \n\r\tü€😀", max_size=12)


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, dict[str, str]]]:
    steps: list[tuple[str, dict[str, str]]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        kind = draw(st.sampled_from(["write_file", "edit_file", "take"]))
        path = draw(st.sampled_from(PATHS))
        if kind == "write_file":
            steps.append((kind, {"path": path, "content": draw(TEXT)}))
        elif kind == "edit_file":
            steps.append((kind, {"path": path, "old_string": draw(TEXT), "new_string": draw(TEXT)}))
        else:
            steps.append((kind, {}))
    return steps


def make_tree(root: Path) -> None:
    for path, content in ORIGINAL_TREE.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content.encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=operations(),
    slices=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6)), min_size=12, max_size=12),
)
def test_apply_changes_reproduces_live_tree(
    steps: list[tuple[str, dict[str, str]]], slices: list[tuple[int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        live_root, replay_root = Path(tmp) / "live", Path(tmp) / "replay"
        make_tree(live_root)
        make_tree(replay_root)
        live = Workspace(live_root)
        batches: list[list[FileChange]] = []

        for (kind, tool_input), (offset, length) in zip(steps, slices, strict=False):
            if kind == "take":
                batches.append(live.take_changes())
                continue
            target = live_root / tool_input["path"]
            if kind == "edit_file" and target.is_file():
                # Most random strings match nothing, so edits mostly replace a slice of the current text.
                text = target.read_bytes().decode()
                tool_input = {
                    **tool_input,
                    "old_string": text[offset : offset + length] or tool_input["old_string"],
                }
            live.run_tool(kind, tool_input)
        batches.append(live.take_changes())

        replay = Workspace(replay_root)
        for batch in batches:
            replay.apply_changes(batch)

        assert tree(replay_root) == tree(live_root)


def test_symlink_loop_is_tool_error(root: Path, workspace: Workspace) -> None:
    os.symlink("loop", root / "loop")

    assert error(workspace, "read_file", {"path": "loop"}) == "'loop' is a symlink loop; use another path"
    assert error(workspace, "write_file", {"path": "loop", "content": ""}) == (
        "'loop' is a symlink loop; use another path"
    )
    assert "loop" in ok(workspace, "list_files", {}).split("\n")
