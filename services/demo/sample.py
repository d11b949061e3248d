"""The sample repository `my-org/my-repo` that the demo and the tests give the agent to work on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["SAMPLE_REPO", "create_sample_repository"]

SAMPLE_REPO = Path(__file__).parent / "sample_repo"


def create_sample_repository(repos_dir: Path) -> Path:
    """Create `my-org/my-repo` under `repos_dir` as a git repository holding the sample project."""
    target = repos_dir / "my-org" / "my-repo"
    shutil.copytree(SAMPLE_REPO, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git = ["git", "-c", "user.name=turnlog demo", "-c", "user.email=demo@turnlog.invalid"]
    subprocess.run([*git, "init", "--quiet", "--initial-branch=main"], cwd=target, check=True)
    subprocess.run([*git, "add", "--all"], cwd=target, check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "Sample API project"], cwd=target, check=True)
    return target
