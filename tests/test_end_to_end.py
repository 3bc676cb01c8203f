"""The whole pipeline through the real CLI on a shrunk tiny world: run -> tables, figures, leaderboard;
a second `run` recomputes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from entrodrop_bench.paths import CONFIGS_DIR

SMALL = [
    "tiny.n_target_docs=80", "tiny.n_general_docs=600", "tiny.n_benchmark=20", "tiny.pretrain_tokens=30000",
    "data.token_budget=40960", "train.checkpoint_every_epochs=4", "train.parallel_runs=2", "eval.limit=10",
    "methods={plain: {plugin: plain}, entrodrop: {plugin: entrodrop, params: {j0: auto}}, "
    "weight_decay: {plugin: weight_decay, grid: {weight_decay: [0.1, 0.5]}}}",
]


def _run(tmp: Path, *extra: str) -> str:
    cmd = [sys.executable, "-m", "entrodrop_bench.cli", "run", str(CONFIGS_DIR / "tiny.yaml"), *SMALL,
           f"output.runs_dir={tmp / 'runs'}", f"output.results_dir={tmp / 'results'}", "--no-progress", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _store_mtimes(runs: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (runs / "store").rglob("*.json")} | {
        str(p): p.stat().st_mtime_ns for p in (runs / "train").rglob("model.safetensors")
    }


def test_tiny_pipeline_end_to_end_and_warm_rerun(tmp_path):
    _run(tmp_path)
    results = tmp_path / "results"
    selection = json.loads((results / "selection.json").read_text())
    assert selection, "selection must pick checkpoints"
    table1 = (results / "tables" / "table1.md").read_text()
    assert "Baseline" in table1 and "+EntroDrop" in table1 and "+Weight Decay" in table1
    assert (results / "figures" / "fig1c_val_loss_by_entropy.png").stat().st_size > 0
    entries = json.loads((results / "leaderboard_entries.json").read_text())
    assert {e["method"]["name"] for e in entries} >= {"plain", "entrodrop", "weight_decay"}
    from entrodrop_bench.provenance import git_commit

    trained_at = {c["trained_at_commit"] for e in entries for c in e["selection"]["checkpoints"]}
    assert trained_at == {git_commit()}, "each selected checkpoint names the commit that trained it"

    before = _store_mtimes(tmp_path / "runs")
    out = _run(tmp_path)
    assert "evaluated': 0" in out and out.count("already complete") == 4
    assert _store_mtimes(tmp_path / "runs") == before

    board = tmp_path / "leaderboard.json"
    for _ in range(2):  # publishing twice replaces, never duplicates
        subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", "leaderboard", "publish", str(results), "--into", str(board)], check=True)
    published = json.loads(board.read_text())
    assert len(published["entries"]) == len(entries)
    check = subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", "leaderboard", "validate", str(board)], capture_output=True, text=True)
    assert check.returncode == 0 and "valid" in check.stdout
