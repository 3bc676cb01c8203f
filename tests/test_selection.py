"""Selection from a synthetic results store: rules, ties, missing metrics, divergence, seeds.

The helpers here (`make_config`, `write_run`) also build the stores of test_tables, test_figures and
test_leaderboard: they write exactly the on-disk formats the trainer and the evaluator write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import write_eval_result, write_manifest, write_status, write_val_curve

from entrodrop_bench.artifacts import ArtifactError, Selection
from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import Layout
from entrodrop_bench.report.comparisons import seed_interval
from entrodrop_bench.report.selection import read_selection, select
from entrodrop_bench.report.tables import main_table

DOMAINS = {"math": ["gsm8k", "svamp"], "general": ["hellaswag", "piqa"]}


def make_config(tmp_path: Path, methods: dict | None = None, seeds=(0,), selection="target_avg", domains=None,
                target="math", preset="tiny", paper_table=1, name="synthetic") -> ExperimentConfig:
    """A config over a synthetic store (no compute happens; the plugins named are resolved, so must be registered)."""
    domains = domains or DOMAINS
    benches = sorted({b for bs in domains.values() for b in bs})
    return ExperimentConfig.model_validate({
        "name": name,
        "preset": preset,
        "paper_table": paper_table,
        "model": {"name_or_path": "Qwen/Qwen3-0.6B-Base", "revision": "abc123"},
        "data": {"target": {"source": "tiny_math"}, "general": {"source": "tiny_general"}, "token_budget": 10000},
        "train": {"seeds": list(seeds)},
        "methods": methods or {
            "plain": {"plugin": "plain"},
            "weight_decay": {"plugin": "weight_decay", "grid": {"weight_decay": [0.1, 0.5]}},
            "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
        },
        "eval": {"lm_eval_tasks": benches, "domains": domains, "target_domain": target, "selection": selection},
        "output": {"runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")},
    })


def write_run(layout: Layout, run: str, seed: int, checkpoints: list[tuple[int, float, dict, float | None]], *,
              method: str | None = None, plugin: str | None = None, params: dict | None = None,
              state: str = "complete", reason: str | None = None, curve: list[dict] | None = None,
              items: dict[int, dict[str, list[float]]] | None = None) -> None:
    """One run: status, validation curve, checkpoint manifests and store results (through the artifact models).

    checkpoints: (step, target_epoch, {benchmark: score in [0,1] or None}, val loss).
    items: step -> benchmark -> per-item scores, kept as those results' per-item outcomes (ids `<benchmark>/<i>`);
    `item_means` turns them into the matching checkpoint scores.
    """
    method = method or run.split("@")[0]
    plugin = plugin or method
    params = params or {}
    total = max((c[0] for c in checkpoints), default=0)
    write_status(layout, run, seed, state=state, reason=reason, total_steps=total, method=method, plugin=plugin,
                 params=params, stats={"masked_fraction": 0.05})
    points = curve or [{"step": 0, "target_epoch": 0.0, "overall": 2.0, "low_entropy": 0.5, "high_entropy": 4.0}] + [
        {"step": s, "target_epoch": e, "overall": v, "low_entropy": v / 4, "high_entropy": v * 2}
        for s, e, _, v in checkpoints if v is not None]
    write_val_curve(layout, run, seed, points)
    for step, epoch, scores, val in checkpoints:
        write_manifest(layout.checkpoint_dir(run, seed, step), run=run, seed=seed, step=step, total_steps=total,
                       target_epoch=epoch, method=method, plugin=plugin, params=params,
                       val_loss=None if val is None else {"overall": val, "low_entropy": 0.1, "high_entropy": 2.0})
        for bench, score in scores.items():
            metric = "acc,none" if bench in ("hellaswag", "piqa") else "exact_match,strict-match"
            write_eval_result(layout, run, seed, step, bench, score, metric=metric, method=method, target_epoch=epoch,
                              checkpoint=str(layout.checkpoint_dir(run, seed, step)),
                              items=(items or {}).get(step, {}).get(bench))


def item_means(per_bench: dict[str, list[float]]) -> dict:
    """Benchmark -> score: the mean of its per-item scores (what the harness reports for 0/1 items)."""
    return {b: sum(v) / len(v) for b, v in per_bench.items()}


def scores(g: float, s: float, h: float = 0.5, p: float = 0.7) -> dict:
    return {"gsm8k": g, "svamp": s, "hellaswag": h, "piqa": p}


def test_highest_target_average_wins_and_ties_go_to_earliest_step(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}})
    layout = Layout.from_config(config)
    # steps 20 and 30 tie on the math average (0.5); 20 must win. Step 40 is better on general only.
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.3, 0.5), 1.0), (20, 2.0, scores(0.4, 0.6), 0.9),
                                   (30, 3.0, scores(0.6, 0.4), 0.8), (40, 4.0, scores(0.3, 0.3, 0.9, 0.9), 0.7)])
    sel = select(config, layout)
    chosen = sel.runs["plain"].seeds["0"].selected
    assert chosen.step == 20
    assert chosen.domain_avg["math"] == pytest.approx(50.0)
    assert chosen.total_avg == pytest.approx((50.0 + 60.0) / 2)
    assert json.loads(layout.selection_file.read_text())["methods"]["plain"]["best_run"] == "plain"
    # order of files on disk must not matter: same answer on a second call
    assert select(config, layout).runs["plain"].seeds["0"].selected.step == 20


def test_val_loss_rule_picks_minimum_validation_loss(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}}, selection="val_loss")
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.9, 0.9), 1.0), (20, 2.0, scores(0.1, 0.1), 0.5),
                                   (30, 3.0, scores(0.2, 0.2), 0.5)])
    assert select(config, layout).runs["plain"].seeds["0"].selected.step == 20


def test_nan_and_missing_metrics_are_never_selected_and_reported(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}})
    layout = Layout.from_config(config)
    best_but_nan = scores(0.99, float("nan"))
    best_but_missing = {"gsm8k": 0.98, "svamp": 0.98, "hellaswag": 0.5}  # piqa never evaluated
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.2, 0.2), 1.0), (20, 2.0, best_but_nan, 0.9),
                                   (30, 3.0, best_but_missing, 0.8), (40, 4.0, scores(0.3, None), 0.7)])
    sel = select(config, layout)
    assert sel.runs["plain"].seeds["0"].selected.step == 10
    missing = {(m.step, m.benchmark) for m in sel.missing}
    assert missing == {(20, "svamp"), (30, "piqa"), (40, "svamp")}
    rows = {r.step: r for r in sel.runs["plain"].seeds["0"].checkpoints}
    assert rows[20].domain_avg["math"] is None and rows[20].complete is False
    assert rows[30].domain_avg["math"] == pytest.approx(98.0) and rows[30].domain_avg["general"] is None


def test_diverged_runs_are_skipped_with_reason(tmp_path):
    config = make_config(tmp_path)
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.2, 0.2), 1.0)])
    write_run(layout, "entrodrop", 0, [(10, 1.0, scores(0.9, 0.9), 1.0)], state="diverged", reason="loss nan at step 11")
    sel = select(config, layout)
    skipped = {s.run: s.reason for s in sel.skipped}
    assert "loss nan at step 11" in skipped["entrodrop"]
    assert sel.methods["entrodrop"].best_run is None
    assert "not trained" in skipped["weight_decay@weight_decay=0.1"]


def test_sweep_keeps_every_grid_point_and_picks_the_best(tmp_path):
    config = make_config(tmp_path)
    layout = Layout.from_config(config)
    write_run(layout, "weight_decay@weight_decay=0.1", 0, [(10, 1.0, scores(0.3, 0.3), 1.0)], params={"weight_decay": 0.1})
    write_run(layout, "weight_decay@weight_decay=0.5", 0, [(10, 1.0, scores(0.4, 0.4), 1.0)], params={"weight_decay": 0.5})
    m = select(config, layout).methods["weight_decay"]
    assert m.runs == ["weight_decay@weight_decay=0.1", "weight_decay@weight_decay=0.5"]
    assert m.best_run == "weight_decay@weight_decay=0.5"


def test_grid_ties_go_to_first_grid_point(tmp_path):
    config = make_config(tmp_path)
    layout = Layout.from_config(config)
    for wd in (0.5, 0.1):
        write_run(layout, f"weight_decay@weight_decay={wd}", 0, [(10, 1.0, scores(0.4, 0.4), 1.0)], params={"weight_decay": wd})
    assert select(config, layout).methods["weight_decay"].best_run == "weight_decay@weight_decay=0.1"


def test_seeds_mean_std_and_t_interval_without_items(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}}, seeds=(0, 1, 2))
    layout = Layout.from_config(config)
    for seed, g in enumerate((0.40, 0.44, 0.48)):
        write_run(layout, "plain", seed, [(10, 1.0, scores(g, g), 1.0), (20, 2.0, scores(g - 0.1, g - 0.1), 0.9)])
    agg = select(config, layout).runs["plain"].aggregate
    math_avg = agg.domain_avg["math"]
    assert math_avg.mean == pytest.approx(44.0)
    assert math_avg.std == pytest.approx(4.0)
    assert math_avg.n == 3 and agg.step == [10, 10, 10]
    # No per-item outcomes: a t interval over the 3 seeds, 44 +- t(0.975, 2) x 4 / sqrt(3) = 44 +- 9.94 (never the
    # min-max of the seeds, which covered the mean 75% of the time).
    assert math_avg.ci95 == pytest.approx([44.0 - 9.9356, 44.0 + 9.9356], abs=1e-3)
    assert math_avg.ci_over == "seeds"


def test_no_interval_from_one_value_or_no_spread_and_empty_domains(tmp_path):
    assert seed_interval([3.0]) is None and seed_interval([48.0, 48.0, 48.0]) is None  # never zero-width
    config = make_config(tmp_path)
    config.eval.domains = {}
    with pytest.raises(ConfigError, match="eval.domains"):
        select(config, Layout.from_config(config))


def test_written_selection_reads_back_and_is_refused_when_missing_or_stale(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}})
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.3, 0.5), 1.0), (20, 2.0, scores(0.4, 0.6), 0.9)])
    with pytest.raises(ArtifactError, match=r"selection\.json does not exist: run `entrodrop-bench select CONFIG`"):
        read_selection(config, layout)
    written = select(config, layout)
    assert read_selection(config, layout) == written
    assert "store/plain/seed0/checkpoint-20/gsm8k.json" in written.inputs.files
    result = layout.result_file("plain", 0, 20, "gsm8k")
    result.write_text(result.read_text())  # rewritten unchanged: still current
    assert read_selection(config, layout) == written

    record = json.loads(result.read_text())
    record["score"] = 0.1
    result.write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match=r"selection\.json is out of date: 1 file\(s\) .*store/plain/seed0/checkpoint-20/"
                                            r"gsm8k\.json changed.*run `entrodrop-bench select CONFIG`"):
        read_selection(config, layout)
    assert select(config, layout).runs["plain"].seeds["0"].selected.step == 10  # re-selecting picks up the change

    write_run(layout, "plain", 1, [(10, 1.0, scores(0.3, 0.5), 1.0)])  # a seed the config does not train: not read
    assert read_selection(config, layout).runs["plain"].seeds["0"].selected.step == 10
    Layout.manifest_file(layout.checkpoint_dir("plain", 0, 10)).unlink()
    with pytest.raises(ArtifactError, match=r"plain/seed0/checkpoint-10/manifest\.json was removed"):
        read_selection(config, layout)
    select(config, layout)
    config.eval.target_domain = "general"
    with pytest.raises(ArtifactError, match=r"out of date: the config's selection settings .* changed"):
        read_selection(config, layout)


def test_selection_of_an_older_format_is_refused_with_the_stage_to_rerun(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}})
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.3, 0.5), 1.0)])
    data = json.loads(select(config, layout).model_dump_json())
    del data["inputs"]
    layout.selection_file.write_text(json.dumps({**data, "format_version": 1}))
    with pytest.raises(ArtifactError, match=rf"Selection format 1, .* reads format {Selection.FORMAT}: re-run `entrodrop-bench select CONFIG`"):
        read_selection(config, layout)
    layout.selection_file.write_text(json.dumps({**data, "format_version": Selection.FORMAT}))
    with pytest.raises(ArtifactError, match=r"not a valid Selection file \(inputs: Field required\)"):
        read_selection(config, layout)


def test_a_result_of_another_format_is_missing_with_the_reason_and_a_manifest_of_one_is_refused(tmp_path):
    """A file this version cannot read is never half-understood: a stored result is listed as missing (re-running
    evaluate rewrites it), a checkpoint manifest stops the report naming the file and the stage."""
    from entrodrop_bench.artifacts import ArtifactError, CheckpointManifest, EvalResult

    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}})
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.2, 0.2), 1.0), (20, 2.0, scores(0.9, 0.9), 0.9)])
    result = EvalResult.path(layout, "plain", 0, 20, "gsm8k")
    result.write_text(json.dumps({**json.loads(result.read_text()), "format_version": 7}))
    sel = select(config, layout)
    assert sel.runs["plain"].seeds["0"].selected.step == 10
    (miss,) = sel.missing
    assert miss.step == 20 and miss.benchmark == "gsm8k"
    assert f"{result} was written in EvalResult format 7" in miss.reason and "`entrodrop-bench eval CONFIG`" in miss.reason

    manifest = CheckpointManifest.path(layout.checkpoint_dir("plain", 0, 10))
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": 7}))
    with pytest.raises(ArtifactError, match=rf"{re.escape(str(manifest))} was written in CheckpointManifest format 7.*`entrodrop-bench train CONFIG`"):
        select(config, layout)


# --------------------------------------------------------------------------- held-out selection (issue 14)
def _halves(benchmark: str, n: int, seed: int = 0) -> list[bool]:
    """Which of `<benchmark>/<i>` (i < n) are in the selection half: the split select makes (ids in sorted order)."""
    from entrodrop_bench.report.statistics import split_items

    ids = [f"{benchmark}/{i}" for i in range(n)]
    ordered = sorted(ids)
    selecting = {i for i, s in zip(ordered, split_items(ordered, seed)) if s}
    return [i in selecting for i in ids]


def test_heldout_picks_on_the_selection_half_and_reports_the_report_half(tmp_path):
    n = 40
    half = {b: _halves(b, n) for b in ("gsm8k", "svamp", "hellaswag", "piqa")}

    def plant(on_selection: float, on_report: float) -> dict[str, list[float]]:
        """Math items scoring `on_selection` on the selection half and `on_report` on the report half (0/1 items:
        the first fraction of each half's items are right); general items all right."""
        out = {}
        for b, sel in half.items():
            if b in ("hellaswag", "piqa"):
                out[b] = [1.0] * n
                continue
            counts = {True: 0, False: 0}
            rate = {True: on_selection, False: on_report}
            row = []
            for s in sel:
                counts[s] += 1
                row.append(1.0 if counts[s] <= rate[s] * sel.count(s) else 0.0)
            out[b] = row
        return out

    # Step 20 is the best checkpoint on the report half only; step 30 on the selection half; step 10 in between.
    items = {10: plant(0.5, 0.5), 20: plant(0.0, 1.0), 30: plant(1.0, 0.25)}
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}}, selection="heldout")
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(s, s / 10, item_means(items[s]), 1.0) for s in (10, 20, 30)], items=items)
    seed = select(config, layout).runs["plain"].seeds["0"]
    assert seed.selected.step == 30  # never 20, which only the report half favours
    assert seed.selected.domain_avg["math"] == pytest.approx(25.0)  # reported on the report half
    assert seed.heldout.selection_avg == pytest.approx(100.0) and seed.heldout.report_avg == pytest.approx(25.0)
    rows = {r.step: r for r in seed.checkpoints}  # every checkpoint row is scored on the report half
    assert rows[20].domain_avg["math"] == pytest.approx(100.0) and rows[10].domain_avg["math"] == pytest.approx(50.0)
    # The paper's rule on the same store picks on every item (step 30: 62.5) and reports that same number.
    heldout_table = main_table(config, select(config, layout))
    assert "selection half of the items, scored on the report half" in heldout_table.notes[0]
    assert not any("Optimism" in note for note in heldout_table.notes)
    paper_config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}})
    paper = select(paper_config, layout)
    run = paper.runs["plain"]
    assert run.seeds["0"].selected.step == 30 and run.seeds["0"].selected.domain_avg["math"] == pytest.approx(62.5)
    # The optimism is cross-fitted (both directions of 50 splits), not split 0's 62.5 - 25.0 alone: over random
    # halves step 30 (62.5 on all items) is mostly picked and scores near its own mean.
    held = run.aggregate.heldout
    assert run.seeds["0"].heldout.crossfit_splits == 50
    assert held.optimism == pytest.approx(62.5 - held.crossfit_avg) and 0.0 < held.optimism < 62.5 - 25.0
    # Under the paper's rule the table notes each method's optimism and the CSV carries it; columns stay the same.
    table = main_table(paper_config, paper)
    assert any("Optimism of the paper's rule" in note and f"+{held.optimism:.1f}" in note for note in table.notes)
    assert table.headers == heldout_table.headers
    optimism = {r["column"]: float(r["mean"]) for r in table.records if r["column"].startswith("math Avg ")}
    assert optimism == pytest.approx({"math Avg held-out": held.crossfit_avg, "math Avg optimism": held.optimism})


def test_heldout_needs_items_and_says_so(tmp_path):
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}}, selection="heldout")
    layout = Layout.from_config(config)
    write_run(layout, "plain", 0, [(10, 1.0, scores(0.3, 0.5), 1.0)])  # results without per-item outcomes
    sel = select(config, layout)
    assert sel.runs["plain"].seeds["0"].selected is None and sel.runs["plain"].aggregate is None
    assert any("per-item outcomes" in s.reason for s in sel.skipped)
    assert {m.benchmark for m in sel.missing} == {"gsm8k", "svamp", "hellaswag", "piqa"}
    assert all("no per-item outcomes" in m.reason for m in sel.missing)
    # The paper's rule still selects from scores alone, with no held-out view.
    paper = select(make_config(tmp_path, methods={"plain": {"plugin": "plain"}}), layout).runs["plain"]
    assert paper.seeds["0"].selected.step == 10 and paper.aggregate.heldout is None


def test_on_pure_noise_heldout_is_unbiased_and_the_paper_rule_is_not(tmp_path):
    """Every checkpoint is a coin flip per item (true score 50): the paper's rule reports the maximum of noisy
    averages, biased upward; the held-out score is the report half of a checkpoint picked on the other half."""
    import numpy as np

    rng = np.random.default_rng(7)
    seeds, steps, n = range(24), (10, 20, 30, 40, 50, 60, 70, 80), 60
    domains = {"math": ["gsm8k", "svamp"], "general": ["piqa"]}
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}}, seeds=seeds, domains=domains)
    layout = Layout.from_config(config)
    for seed in seeds:
        items = {s: {b: rng.integers(0, 2, n).astype(float).tolist() for b in ("gsm8k", "svamp", "piqa")} for s in steps}
        write_run(layout, "plain", seed, [(s, s / 10, item_means(items[s]), 1.0) for s in steps], items=items)
    agg = select(config, layout).runs["plain"].aggregate
    assert agg.heldout.step and len(agg.heldout.step) == len(seeds)
    # The paper's number is the selected checkpoints' math average; ~+6.5 points expected (max of 8, sd ~4.6).
    assert agg.domain_avg["math"].mean == pytest.approx(agg.heldout.paper_avg)
    assert agg.heldout.paper_avg - 50.0 > 4.0
    # Held-out: sd of one seed's report half ~6.5 points, of the mean over 24 seeds ~1.3: within 3 sd of 50.
    assert abs(agg.heldout.report_avg - 50.0) < 4.0
    assert agg.heldout.optimism > 3.0 and agg.heldout.selection_avg - 50.0 > 4.0  # the selection half is optimistic too


def test_heldout_skips_unscored_checkpoints_like_the_paper_rule(tmp_path):
    n = 10
    good = {b: [1.0, 0.0] * (n // 2) for b in ("gsm8k", "svamp", "hellaswag", "piqa")}
    config = make_config(tmp_path, methods={"plain": {"plugin": "plain"}}, selection="heldout")
    layout = Layout.from_config(config)
    # Step 20 never had piqa evaluated: neither rule can pick it, and it does not stop the held-out view.
    write_run(layout, "plain", 0, [(10, 1.0, item_means(good), 1.0),
                                   (20, 2.0, {"gsm8k": 1.0, "svamp": 1.0, "hellaswag": 1.0}, 0.9)],
              items={10: good, 20: {b: [1.0] * n for b in ("gsm8k", "svamp", "hellaswag")}})
    seed = select(config, layout).runs["plain"].seeds["0"]
    assert seed.selected.step == 10 and seed.heldout.step == 10 and seed.heldout.paper_avg == pytest.approx(50.0)
