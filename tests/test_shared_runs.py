"""Runs with identical settings are trained once and shared between presets (`output.shared_runs_from`)."""

from __future__ import annotations

from entrodrop_bench.artifacts import RunStatus
from entrodrop_bench.config import run_key
from entrodrop_bench.orchestrate.pipeline import stage_train
from entrodrop_bench.paths import Layout


def _snapshot(layout: Layout, run: str) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in layout.run_dir(run, 0).rglob("*") if p.is_file()}


def test_identical_runs_are_read_from_the_other_preset_and_different_ones_train(mini_config, tmp_path):
    methods = {"plain": {"plugin": "plain"}, "neftune": {"plugin": "neftune", "params": {"alpha": 5.0}}}
    table1 = mini_config(methods=methods)
    first = Layout.from_config(table1)
    assert set(stage_train(table1, first, progress=False).values()) == {"complete"}
    before = _snapshot(first, "plain")
    assert RunStatus.read(RunStatus.path(first, "plain", 0)).run_key == run_key(table1, "plain", 0)

    # An ablation-like preset: its own name, outputs and benchmarks; plain identical, neftune with another alpha.
    out = tmp_path / "ablation"
    ablation = mini_config(
        name="ablation", methods={**methods, "neftune": {"plugin": "neftune", "params": {"alpha": 1.0}}},
        output={"runs_dir": str(out / "runs"), "results_dir": str(out / "results"), "shared_runs_from": [str(first.runs_dir)]},
    )
    second = Layout.from_config(ablation)
    lines: list[str] = []
    states = stage_train(ablation, second, progress=False, echo=lines.append)
    assert states == {"plain/seed0": "complete", "neftune/seed0": "complete"}
    assert any("plain/seed0 shared from" in line for line in lines)
    assert second.run_dir("plain", 0).is_symlink()
    assert [(s, p.resolve()) for s, p in second.checkpoints("plain", 0)] == [(s, p.resolve()) for s, p in first.checkpoints("plain", 0)]
    assert _snapshot(first, "plain") == before, "the shared run was not touched"
    assert not second.run_dir("neftune", 0).is_symlink(), "different settings: trained here"
    assert second.checkpoints("neftune", 0)
    assert ("plain", 0) in second.train_runs()


def test_unfinished_or_existing_runs_are_never_replaced(mini_config, tmp_path):
    table1 = mini_config()
    first = Layout.from_config(table1)
    stage_train(table1, first, progress=False)
    status = RunStatus.read(RunStatus.path(first, "plain", 0))
    status.state = "running"
    status.write(RunStatus.path(first, "plain", 0))
    out = tmp_path / "other"
    other = mini_config(output={"runs_dir": str(out / "runs"), "results_dir": str(out / "results"),
                                "shared_runs_from": [str(first.runs_dir)]})
    lines: list[str] = []
    stage_train(other, Layout.from_config(other), progress=False, echo=lines.append)
    assert any("not finished" in line for line in lines)
    assert not Layout.from_config(other).run_dir("plain", 0).is_symlink()
