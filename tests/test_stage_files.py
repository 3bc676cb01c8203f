"""Stages meet through files only: training reads what `prepare` wrote (the record, the tokenized corpora, the
base-model signal caches, the gate shares, the sample for Figure 2c) and never writes any of it; a plugin receives
its signals in its prepare context instead of computing them."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from entrodrop_bench.artifacts import RunStatus
from entrodrop_bench.errors import UserError
from entrodrop_bench.paths import Layout
from entrodrop_bench.pipeline import stage_prepare, stage_train

METHODS = {"plain": {"plugin": "plain"},
           "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.3, "j0": 0.2}},
           "matched": {"plugin": "token_dropout", "params": {"gamma_max": {"match": "entrodrop"}, "j0": 0.2}}}


def _prepare_outputs(layout: Layout) -> list[Path]:
    """Every file the prepare stage wrote: everything under the runs folder but the training runs, and its sample."""
    train = layout.run_dir("x", 0).parent.parent
    found = [p for p in layout.runs_dir.rglob("*") if p.is_file() and train not in p.parents]
    return sorted(found + [layout.sample_entropy_file])


def _snapshot(paths: list[Path]) -> dict[str, tuple[int, str]]:
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths}


def test_training_reads_prepare_outputs_and_never_writes_them(mini_config):
    config = mini_config(methods=METHODS)
    layout = Layout.from_config(config)
    stage_prepare(config, layout, echo=lambda _: None)
    outputs = _prepare_outputs(layout)
    assert any(p.suffix == ".safetensors" for p in outputs) and layout.gate_shares_file in outputs
    before = _snapshot(outputs)
    layout.run_dir("x", 0).parent.parent.mkdir(parents=True, exist_ok=True)  # where training writes
    # read-only: every prepare output, and every folder of them but the runs folder (which holds the training runs)
    locked = outputs + sorted({p.parent for p in outputs} - {layout.runs_dir})
    modes = {p: p.stat().st_mode for p in locked}
    try:
        for p in locked:
            p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        states = stage_train(config, layout, only=["entrodrop", "matched"], progress=False, echo=lambda _: None)
    finally:
        for p in reversed(locked):
            p.chmod(modes[p])
    assert set(states.values()) == {"complete"}, states
    # root ignores permissions: the snapshot is what proves nothing was written, added or replaced
    assert _prepare_outputs(layout) == outputs, "training added files to prepare's folders"
    assert _snapshot(outputs) == before, "training rewrote a prepare output"
    matched = RunStatus.read(RunStatus.path(layout, "matched", 0))
    assert 0 < matched.resolved["gamma_max"] < 0.3  # resolved from the gate share prepare measured


def test_a_missing_signal_cache_is_an_error_for_training_not_a_computation(mini_config):
    config = mini_config(methods=METHODS)
    layout = Layout.from_config(config)
    prepared = stage_prepare(config, layout, echo=lambda _: None)
    for cache in layout.entropy_cache_dir.glob("*.safetensors"):
        cache.unlink()
    from entrodrop_bench.train.trainer import Trainer

    with pytest.raises(UserError, match=r"signal cache .* is missing or stale .* run `entrodrop-bench prepare CONFIG`"):
        Trainer(prepared, "entrodrop", 0, progress=False).train()
    assert not list(layout.entropy_cache_dir.glob("*.safetensors")), "training computed no signal"
