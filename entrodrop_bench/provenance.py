"""Which code produced a file: the project's git commit, recorded by training and by the leaderboard."""

from __future__ import annotations

import subprocess
from pathlib import Path

from entrodrop_bench.paths import PROJECT_ROOT


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """HEAD of the project, with `-dirty` when tracked files differ; None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
