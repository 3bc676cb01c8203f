"""Fault injection for the crash tests: kill this process at a named point.

`ENTRODROP_BENCH_FAULT=before-replace:checkpoint-4` SIGKILLs the process just before the atomic rename
that would publish `checkpoint-4`, `after-replace:checkpoint-4` just after it (the checkpoint is complete,
nothing written after it is). The point names are `before-replace:<file or folder name>` and
`after-replace:<file or folder name>`; several may be given, comma-separated. Unset (always, outside
tests), this costs one environment lookup.

`ENTRODROP_BENCH_PAUSE=<point>` (same names) stops the process at that point until something kills it: a
job that a test cancels (scancel) or preempts exactly there, whatever the machine's speed.
"""

from __future__ import annotations

import os
import signal
import time


def maybe_die(point: str) -> None:
    wanted = os.environ.get("ENTRODROP_BENCH_FAULT")
    if wanted and point in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    paused = os.environ.get("ENTRODROP_BENCH_PAUSE")
    if paused and point in paused.split(","):
        while True:
            time.sleep(3600)
