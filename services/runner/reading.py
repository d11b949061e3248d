"""The read-only tools' work: listing, reading and searching workspace files within an output cap."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BINARY_SNIFF_BYTES",
    "NOTE_RESERVE_BYTES",
    "SearchHits",
    "ToolFailedError",
    "WorkspaceEntry",
    "cap_output",
    "cut_utf8",
    "is_binary",
    "list_entries",
    "number_lines",
    "search_files",
]

BINARY_SNIFF_BYTES = 8000
"""How many leading bytes are checked for a NUL byte to call a file binary, as git does."""

MAX_HIT_LINE_CHARS = 300
"""Longer matching lines are cut in search output, so that one minified file cannot fill it."""

NOTE_RESERVE_BYTES = 256
"""Room kept free under the output cap for the note that reports the truncation."""


class ToolFailedError(Exception):
    """A tool call the model can correct; `Workspace.run_tool` returns its message as an is_error result."""


@dataclass(frozen=True, slots=True)
class WorkspaceEntry:
    """One file or directory found under the workspace root."""

    path: str
    """POSIX path relative to the workspace root."""
    location: str
    """Absolute path on disk, without symlinks resolved."""
    is_dir: bool
    is_symlink: bool


@dataclass(slots=True)
class SearchHits:
    """Matching lines as `path:line: text`, sorted by path then line, and the count of all matches."""

    lines: list[str] = field(default_factory=list)
    total: int = 0


def is_binary(head: bytes) -> bool:
    """Return whether the leading bytes of a file contain a NUL byte."""
    return b"\x00" in head[:BINARY_SNIFF_BYTES]


def cut_utf8(text: str, max_bytes: int) -> str:
    """Return the longest prefix of `text` whose UTF-8 encoding fits in `max_bytes`."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    # Decoding with "ignore" drops only the partial character at the cut, since the rest is valid UTF-8.
    return encoded[: max(max_bytes, 0)].decode("utf-8", errors="ignore")


def cap_output(text: str, max_bytes: int, hint: str) -> str:
    """Cut `text` to at most `max_bytes` of UTF-8, note included, ending with a note that names `hint`."""
    size = len(text.encode())
    if size <= max_bytes:
        return text

    # The note is sized with the largest number it can show, so the result never passes max_bytes.
    note_size = len(f"\n[output truncated: showed {max_bytes} of {size} bytes; {hint}]".encode())
    shown = cut_utf8(text, max_bytes - note_size)
    return f"{shown}\n[output truncated: showed {len(shown.encode())} of {size} bytes; {hint}]"


def list_entries(root: Path, top: Path) -> Iterator[WorkspaceEntry]:
    """Yield every entry under `top`, in no particular order, without entering symlinks or `.git`.

    `root` and `top` must be real paths with `top` inside `root`. A symlink is yielded only when its
    target lies inside the root, and never descended into, so a walk neither leaves the root nor
    loops. Directories that cannot be read are skipped.
    """
    pending = [str(top)]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as scan:
                children = list(scan)
        except OSError:
            continue

        for child in children:
            if child.name == ".git":
                continue
            relative = Path(child.path).relative_to(root).as_posix()

            if child.is_symlink():
                target = os.path.realpath(child.path)
                if os.path.commonpath([str(root), target]) != str(root):
                    continue
                yield WorkspaceEntry(relative, child.path, os.path.isdir(target), is_symlink=True)
                continue

            is_dir = child.is_dir(follow_symlinks=False)
            yield WorkspaceEntry(relative, child.path, is_dir, is_symlink=False)
            if is_dir:
                pending.append(child.path)


def number_lines(relative: str, lines: Iterable[bytes], start: int, end: int | None, max_bytes: int) -> str:
    """Return lines `start` to `end` of a file, each prefixed with its number and a tab.

    Stop before the output passes `max_bytes` and end it with a note that gives the line to read on from.
    Raise ToolFailedError when a shown line is not UTF-8 or `start` is past the last line.
    """
    budget = max_bytes - NOTE_RESERVE_BYTES
    shown: list[str] = []
    used = 0
    line_count = 0

    for number, raw in enumerate(lines, start=1):
        line_count = number
        if number < start:
            continue
        if end is not None and number > end:
            break
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise ToolFailedError(
                f"{relative!r} is not UTF-8 text (invalid byte on line {number}); read_file shows only UTF-8 text files"
            ) from exc

        numbered = f"{number:>6}\t{text}"
        size = len(numbered.encode())
        if used + size > budget:
            return _truncated_lines(shown, numbered, budget, max_bytes, start, number)
        shown.append(numbered)
        used += size

    # An empty file read from line 1 is shown as empty rather than rejected.
    if start > line_count and start > 1:
        raise ToolFailedError(f"start_line {start} is past the end of {relative!r}, which has {line_count} lines")
    if not shown:
        return f"[file {relative!r} is empty]"
    return "".join(shown)


def _truncated_lines(shown: list[str], next_line: str, budget: int, max_bytes: int, start: int, number: int) -> str:
    if shown:
        note = (
            f"\n[output truncated at {max_bytes} bytes: showed lines {start}-{number - 1}; "
            f"use read_file with start_line={number} to read on]"
        )
        return "".join(shown) + note

    # A single line longer than the whole budget, as in minified files, can only be shown cut.
    note = (
        f"\n[output truncated at {max_bytes} bytes: line {number} alone is longer, so it was cut; "
        "use search_code to find text in it]"
    )
    return cut_utf8(next_line, budget) + note


def search_files(root: Path, query: str, extension: str | None, max_hits: int) -> SearchHits:
    """Find the lines that contain `query`, keeping the first `max_hits` and counting all of them.

    Symlinks are skipped because their targets inside the root are searched under their own paths.
    Binary files, files that are not UTF-8 and files that cannot be read are skipped too.
    """
    suffix = f".{extension}" if extension else None
    files = sorted(
        (entry for entry in list_entries(root, root) if not entry.is_dir and not entry.is_symlink),
        key=lambda entry: entry.path,
    )
    needle = query.encode()
    hits = SearchHits()

    for entry in files:
        if suffix is not None and not entry.path.endswith(suffix):
            continue
        try:
            data = Path(entry.location).read_bytes()
        except OSError:
            continue
        # The byte test is far cheaper than decoding, and most files do not match at all.
        if needle not in data or is_binary(data):
            continue
        try:
            text = data.decode()
        except UnicodeDecodeError:
            continue
        _collect_hits(hits, entry.path, text, query, max_hits)
    return hits


def _collect_hits(hits: SearchHits, path: str, text: str, query: str, max_hits: int) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        if query not in line:
            continue
        hits.total += 1
        if len(hits.lines) >= max_hits:
            continue

        shown = line.rstrip("\r")
        if len(shown) > MAX_HIT_LINE_CHARS:
            shown = shown[:MAX_HIT_LINE_CHARS] + " [line cut]"
        hits.lines.append(f"{path}:{number}: {shown}")
