"""Per-job git checkouts: clone the repository at its base commit, replay recorded changes, diff."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

from contracts.events import FileChange
from services.runner.tools import Workspace

__all__ = ["CheckoutError", "diff_against_base", "prepare_checkout", "repository_path"]

_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class CheckoutError(Exception):
    """A job's repository cannot be found, cloned or rebuilt."""


def repository_path(repos_dir: Path, repository: str) -> Path:
    """Map `owner/name` to its git repository under `repos_dir`, rejecting names that could escape it."""
    if not _REPOSITORY.match(repository) or ".." in repository:
        raise CheckoutError(f"invalid repository {repository!r}: expected owner/name with letters, digits, -_.")
    path = repos_dir / repository
    if not (path / ".git").exists() and not (path / "HEAD").exists():
        raise CheckoutError(f"repository {repository} not found at {path}; create it there or set TURNLOG_REPOS_DIR")
    return path


async def prepare_checkout(
    source: Path,
    destination: Path,
    base_commit: str | None,
    changes: list[FileChange],
    *,
    max_output_bytes: int = 32 * 1024,
    max_file_bytes: int = 256 * 1024,
) -> tuple[Workspace, str]:
    """Clone `source` into a fresh `destination` at `base_commit` (default HEAD) and replay `changes`.

    Returns the workspace, whose tools cap their output at `max_output_bytes` and each written file
    at `max_file_bytes`, and the commit it starts from. Any earlier content of `destination` is
    removed first, because a workspace is always rebuilt from events, never trusted from disk.
    """
    if destination.exists():
        await asyncio.to_thread(shutil.rmtree, destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    await _git(None, "clone", "--quiet", "--no-hardlinks", str(source), str(destination))
    if base_commit:
        await _git(destination, "checkout", "--quiet", "--detach", base_commit)
    commit = (await _git(destination, "rev-parse", "HEAD")).strip()

    workspace = Workspace(destination, max_output_bytes=max_output_bytes, max_file_bytes=max_file_bytes)
    await asyncio.to_thread(workspace.apply_changes, changes)
    workspace.take_changes()
    return workspace, commit


async def diff_against_base(checkout: Path, base_commit: str) -> str:
    """Return the unified diff of the checkout's files, new files included, against `base_commit`."""
    await _git(checkout, "add", "--all")
    return await _git(checkout, "-c", "core.quotepath=false", "diff", "--cached", "--no-color", base_commit)


async def _git(cwd: Path | None, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise CheckoutError(f"git {' '.join(args)} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")
