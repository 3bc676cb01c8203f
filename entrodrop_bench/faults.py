"""Fault injection for the crash tests: kill this process at a named point.

`ENTRODROP_BENCH_FAULT=before-replace:checkpoint-4` SIGKILLs the process just before the atomic rename
that would publish `checkpoint-4`; the point names are `before-replace:<file or folder name>`. Unset
(always, outside tests), this costs one environment lookup.
"""

from __future__ import annotations

import os
import signal


def maybe_die(point: str) -> None:
    wanted = os.environ.get("ENTRODROP_BENCH_FAULT")
    if wanted and point in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
