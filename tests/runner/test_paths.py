"""Tests of path confinement to the workspace root."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runner.paths import (
    PathInGitDirectoryError,
    PathOutsideWorkspaceError,
    resolve_inside,
    workspace_relative,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("print('hi')\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("SECRET\n")
    return workspace


def outside_message(path: str) -> str:
    return f"path {path!r} is outside the workspace; use a relative path inside the workspace, such as 'src/main.py'"


@pytest.mark.parametrize("path", ["", ".", "./", "src/.."])
def test_resolve_root_itself(root: Path, path: str) -> None:
    assert resolve_inside(root, path) == root


def test_resolve_relative_file(root: Path) -> None:
    assert resolve_inside(root, "src/app.py") == root / "src" / "app.py"


def test_resolve_normalizes_dots_and_slashes(root: Path) -> None:
    assert resolve_inside(root, "./src//../src/app.py") == root / "src" / "app.py"


def test_resolve_missing_file_inside(root: Path) -> None:
    assert resolve_inside(root, "new/dir/file.txt") == root / "new" / "dir" / "file.txt"


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../../etc/passwd", "..", "../outside/secret.txt", "src/../../outside", "a\x00b"],
)
def test_resolve_rejects_escape(root: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspaceError) as caught:
        resolve_inside(root, path)

    assert caught.value.path == path
    assert str(caught.value) == outside_message(path)
    assert isinstance(caught.value, ValueError)


def test_resolve_rejects_symlink_to_filesystem_root(root: Path) -> None:
    os.symlink("/", root / "slash")

    for path in ["slash", "slash/etc/passwd", "slash/."]:
        with pytest.raises(PathOutsideWorkspaceError):
            resolve_inside(root, path)


def test_resolve_rejects_symlinked_dir_outside(root: Path) -> None:
    os.symlink(root.parent / "outside", root / "src" / "linked")

    with pytest.raises(PathOutsideWorkspaceError):
        resolve_inside(root, "src/linked/secret.txt")
    with pytest.raises(PathOutsideWorkspaceError):
        resolve_inside(root, "src/linked/new.txt")


def test_resolve_rejects_relative_symlink_escape(root: Path) -> None:
    os.symlink("../../outside/secret.txt", root / "src" / "secret")

    with pytest.raises(PathOutsideWorkspaceError):
        resolve_inside(root, "src/secret")


def test_resolve_rejects_dangling_symlink_outside(root: Path) -> None:
    os.symlink(root.parent / "outside" / "not-yet.txt", root / "dangling")

    with pytest.raises(PathOutsideWorkspaceError):
        resolve_inside(root, "dangling")
    assert not (root.parent / "outside" / "not-yet.txt").exists()


def test_resolve_follows_symlink_inside(root: Path) -> None:
    os.symlink("src/app.py", root / "alias.py")
    os.symlink("missing.txt", root / "dangling")

    assert resolve_inside(root, "alias.py") == root / "src" / "app.py"
    assert resolve_inside(root, "dangling") == root / "missing.txt"


def test_resolve_accepts_symlinked_root(root: Path) -> None:
    alias = root.parent / "alias"
    os.symlink(root, alias)

    assert resolve_inside(alias, "src/app.py") == root / "src" / "app.py"
    with pytest.raises(PathOutsideWorkspaceError):
        resolve_inside(alias, "../outside/secret.txt")


def test_resolve_rejects_sibling_with_common_prefix(root: Path) -> None:
    sibling = root.parent / (root.name + "-other")
    sibling.mkdir()

    with pytest.raises(PathOutsideWorkspaceError):
        resolve_inside(root, f"../{sibling.name}/file.txt")


def test_workspace_relative_paths(root: Path) -> None:
    assert workspace_relative(root, root, "") == "."
    assert workspace_relative(root, root / "src" / "app.py", "./src/app.py") == "src/app.py"


@pytest.mark.parametrize("path", [".git", ".git/config", "vendor/lib/.git/HEAD"])
def test_workspace_relative_rejects_git(root: Path, path: str) -> None:
    with pytest.raises(PathInGitDirectoryError) as caught:
        workspace_relative(root, root / path, path)

    assert caught.value.path == path
    assert str(caught.value) == (
        f"path {path!r} is inside a .git directory, which the tools neither read nor change; use a path outside .git"
    )
    assert isinstance(caught.value, PathOutsideWorkspaceError)


def test_workspace_relative_accepts_gitignore(root: Path) -> None:
    assert workspace_relative(root, root / ".gitignore", ".gitignore") == ".gitignore"


segments = st.sampled_from(["a", "b", "..", ".", "", "link", "up"])


@given(st.lists(segments, max_size=8), st.booleans())
def test_resolve_result_stays_inside(parts: list[str], absolute: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(os.path.realpath(tmp)) / "workspace"
        (root / "a" / "b").mkdir(parents=True)
        os.symlink("../..", root / "a" / "up")
        os.symlink("/", root / "a" / "b" / "link")
        path = ("/" if absolute else "") + "/".join(parts)

        try:
            resolved = resolve_inside(root, path)
        except PathOutsideWorkspaceError:
            return
        assert os.path.commonpath([root, resolved]) == str(root)
        assert os.path.realpath(resolved) == str(resolved)
