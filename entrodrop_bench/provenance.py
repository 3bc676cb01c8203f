"""Which code produced a file: the project's git commit, recorded by training and by the leaderboard."""

from __future__ import annotations

import subprocess
from pathlib import Path

from entrodrop_bench.paths import OUTPUT_DIRS_IN_CHECKOUT, PROJECT_ROOT

DIRTY = "-dirty"


def git_commit(root: Path = PROJECT_ROOT, outputs: tuple[str, ...] = OUTPUT_DIRS_IN_CHECKOUT) -> str | None:
    """HEAD of the project, with `-dirty` when tracked files differ from it; None outside a git checkout.

    Changes under `outputs` (results/, which every run rewrites) do not count: they are what the code produced,
    not the code."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        excluded = [f":(exclude){o}" for o in outputs]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + (DIRTY if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def from_modified_tree(commit: str | None) -> bool:
    """Whether a recorded commit says the work tree had changes to tracked files (`-dirty`)."""
    return bool(commit) and commit.endswith(DIRTY)


def main(argv: list[str] | None = None) -> int:
    """`python -m entrodrop_bench.provenance [--allow-dirty]`: what `make` runs before any compute whose results it
    publishes, since publishing refuses entries from a modified work tree (exit 1, saying why)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    commit = git_commit()
    if from_modified_tree(commit) and "--allow-dirty" not in args:
        print(f"the work tree ({commit}) has changes to tracked files outside results/: publishing its results would be "
              "refused at the end. Commit them first, or run with ALLOW_DIRTY=1 (make) / --allow-dirty (publish) to "
              "publish them marked as from a modified work tree.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
