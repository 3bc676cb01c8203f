"""A run's state from its files alone (status, checkpoints, validation curve, train log), for the commands that
only look (`status`, `launch`, sharing finished runs): no torch, no training code."""

from __future__ import annotations

from entrodrop_bench.artifacts import ArtifactError, RunStatus, TrainLog, ValCurve
from entrodrop_bench.paths import Layout


def read_status(layout: Layout, run: str, seed: int) -> RunStatus | None:
    """A run's status, or None when it has none (not started). A status this version cannot read raises
    ArtifactError saying what to do (writes are atomic, so a torn file is not a case)."""
    return RunStatus.read_or_none(RunStatus.path(layout, run, seed))


def run_is_complete(layout: Layout, run: str, seed: int) -> bool:
    """A run is complete when its status says so *and* everything it writes is there: the final checkpoint, the
    final validation point and every step's log line. A run marked complete with anything missing is not
    (a re-run repairs it from the final checkpoint without training)."""
    status = read_status(layout, run, seed)
    if status is None or status.state != "complete":
        return False
    total = status.total_steps
    ckpts = layout.checkpoints(run, seed)
    curve = ValCurve.read_or_none(ValCurve.path(layout, run, seed))
    if not ckpts or ckpts[-1][0] != total or curve is None or curve.last_step() != total:
        return False
    try:
        log = TrainLog.read(TrainLog.path(layout, run, seed))
    except ArtifactError:
        return False
    return len(log.records) == total and log.last_step() == total
