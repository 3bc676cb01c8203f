"""The whole pipeline through the real CLI on a shrunk tiny world: run -> tables, figures, leaderboard;
a second `run` recomputes nothing."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from entrodrop_bench.artifacts import LeaderboardEntries
from entrodrop_bench.config import load_config, run_names
from entrodrop_bench.paths import CONFIGS_DIR, Layout
from entrodrop_bench.report.tables import r2

SMALL = [
    "tiny.n_target_docs=80", "tiny.n_general_docs=600", "tiny.n_benchmark=20", "tiny.pretrain_tokens=30000",
    "data.token_budget=40960", "train.checkpoint_every_epochs=4", "train.parallel_runs=2", "eval.limit=10",
    "methods={plain: {plugin: plain}, entrodrop: {plugin: entrodrop, params: {j0: auto}}, "
    "weight_decay: {plugin: weight_decay, grid: {weight_decay: [0.1, 0.5]}}}",
]


def _overrides(tmp: Path) -> list[str]:
    return [*SMALL, f"output.runs_dir={tmp / 'runs'}", f"output.results_dir={tmp / 'results'}"]


def _run(tmp: Path, *extra: str) -> str:
    cmd = [sys.executable, "-m", "entrodrop_bench.cli", "run", str(CONFIGS_DIR / "tiny.yaml"), *_overrides(tmp), "--no-progress", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _store_mtimes(runs: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (runs / "store").rglob("*.json")} | {
        str(p): p.stat().st_mtime_ns for p in (runs / "train").rglob("model.safetensors")
    }


def _expected_selection(tmp: Path) -> dict[str, tuple[str, int, dict[str, float]]]:
    """method -> (run, step, domain averages x100) of the checkpoint the paper's rule picks, recomputed here
    from the store files alone: highest target-domain average over complete checkpoints (earliest step on a
    tie), and the grid point with the highest such average (first in config order on a tie). One seed."""
    config = load_config(CONFIGS_DIR / "tiny.yaml", _overrides(tmp))
    layout, domains, target = Layout.from_config(config), config.eval.domains, config.eval.target_domain
    assert config.eval.selection == "target_avg" and config.train.seeds == [0]
    best: dict[str, tuple[str, int, dict[str, float]]] = {}
    for run, (method, _, _) in run_names(config).items():
        candidates = []
        for step, _ in layout.checkpoints(run, 0):
            scores = {b: json.loads(layout.result_file(run, 0, step, b).read_text())["score"] for bs in domains.values() for b in bs}
            assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values()), (run, step, scores)
            averages = {d: sum(100 * scores[b] for b in bs) / len(bs) for d, bs in domains.items()}
            candidates.append((-averages[target], step, averages))
        _, step, averages = min(candidates, key=lambda c: c[:2])
        if method not in best or averages[target] > best[method][2][target]:
            best[method] = (run, step, averages)
    return best


def _check_selection_and_table1(tmp: Path) -> None:
    results = tmp / "results"
    expected = _expected_selection(tmp)
    assert set(expected) == {"plain", "entrodrop", "weight_decay"}
    selection = json.loads((results / "selection.json").read_text())
    records = list(csv.DictReader((results / "tables" / "table1.csv").open()))
    table1 = (results / "tables" / "table1.md").read_text()
    for method, (run, step, averages) in expected.items():
        assert selection["methods"][method]["best_run"] == run, method
        assert selection["runs"][run]["seeds"]["0"]["selected"]["step"] == step, method
        label = {"plain": "Baseline", "entrodrop": "+EntroDrop", "weight_decay": "+Weight Decay"}[method]
        row = next(line for line in table1.splitlines() if line.startswith(f"| {label} |"))
        for domain, value in averages.items():
            cell = next(r for r in records if r["method"] == method and r["column"] == f"{domain} Avg")
            assert (cell["run"], float(cell["mean"])) == (run, pytest.approx(value, abs=1e-6)), (method, domain)
            assert f" {r2(value):.2f}" in row, (method, domain, row)


def test_tiny_pipeline_end_to_end_and_warm_rerun(tmp_path):
    _run(tmp_path)
    results = tmp_path / "results"
    _check_selection_and_table1(tmp_path)
    # `tables --from-items` rebuilds the same tables from the per-item file `select` wrote.
    tables = {p.name: p.read_bytes() for p in (results / "tables").iterdir()}
    subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", "tables", str(CONFIGS_DIR / "tiny.yaml"), *_overrides(tmp_path),
                    "--from-items", str(results / "item_outcomes.jsonl.gz")], check=True)
    assert {p.name: p.read_bytes() for p in (results / "tables").iterdir()} == tables
    assert (results / "figures" / "fig1c_val_loss_by_entropy.png").stat().st_size > 0
    entries = LeaderboardEntries.read(results / "leaderboard_entries.json").entries
    assert {e.method.name for e in entries} >= {"plain", "entrodrop", "weight_decay"}
    from entrodrop_bench.provenance import git_commit

    trained_at = {c.trained_at_commit for e in entries for c in e.selection.checkpoints}
    assert trained_at == {git_commit()}, "each selected checkpoint names the commit that trained it"
    # each entry carries its run's validation curve (step 0, then every checkpoint) for the results page
    for e in entries:
        assert e.val_curve is not None and [c.seed for c in e.val_curve] == e.seeds and e.val_curve[0].step[0] == 0
        assert e.selection.checkpoints[0].step in e.val_curve[0].step

    before = _store_mtimes(tmp_path / "runs")
    out = _run(tmp_path)
    assert "evaluated': 0" in out and out.count("already complete") == 4
    assert _store_mtimes(tmp_path / "runs") == before

    board = tmp_path / "leaderboard.json"
    for _ in range(2):  # publishing twice replaces, never duplicates
        subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", "leaderboard", "publish", str(results), "--into", str(board),
                        "--allow-dirty"], check=True)  # whatever state this checkout is in
    published = json.loads(board.read_text())
    assert len(published["entries"]) == len(entries)
    check = subprocess.run([sys.executable, "-m", "entrodrop_bench.cli", "leaderboard", "validate", str(board)], capture_output=True, text=True)
    assert check.returncode == 0 and "valid" in check.stdout
