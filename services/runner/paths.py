"""Path confinement: map a path the model sends to a location inside the workspace root."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["PathInGitDirectoryError", "PathOutsideWorkspaceError", "resolve_inside", "workspace_relative"]


class PathOutsideWorkspaceError(ValueError):
    """A path is absolute, climbs out with `..`, or goes through a symlink whose target leaves the root."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"path {path!r} is outside the workspace; use a relative path inside the workspace, such as 'src/main.py'"
        )


class PathInGitDirectoryError(PathOutsideWorkspaceError):
    """A path points into a `.git` directory, which contains the checkout's metadata and maybe credentials."""

    def __init__(self, path: str) -> None:
        ValueError.__init__(
            self,
            f"path {path!r} is inside a .git directory, which the tools neither read nor change; "
            "use a path outside .git",
        )
        self.path = path


def resolve_inside(root: Path, path: str) -> Path:
    """Resolve `path` against `root` and return the real location, following every symlink.

    An empty path or "." is the root itself. Raise PathOutsideWorkspaceError when the path is
    absolute, contains a NUL byte, or resolves outside the root: through `..` or through a symlink
    at any level, dangling ones included, because `os.path.realpath` follows a dangling link to the
    place it names.
    """
    if "\x00" in path or os.path.isabs(path):
        raise PathOutsideWorkspaceError(path)

    real_root = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(real_root, path))
    if os.path.commonpath([real_root, resolved]) != real_root:
        raise PathOutsideWorkspaceError(path)
    return Path(resolved)


def workspace_relative(root: Path, resolved: Path, path: str) -> str:
    """Return the POSIX path of `resolved` relative to `root`, "." for the root itself.

    `root` and `resolved` must both be real paths, as `resolve_inside` returns them. Raise
    PathInGitDirectoryError when any part of the path is `.git`: a checkout's `.git/config` may hold
    a clone URL with a token, and writing hooks there would run code outside the agent's tools.
    `path` is the text the model sent, for the error message.
    """
    relative = PurePosixPath(resolved.relative_to(root).as_posix())
    if ".git" in relative.parts:
        raise PathInGitDirectoryError(path)
    return relative.as_posix()
