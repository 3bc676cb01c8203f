"""Per-document validation losses (ValCurve format 2) and Table 4's intervals over validation documents."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from test_selection import make_config, scores, write_run

from entrodrop_bench.artifacts import ValCurve, ValPoint
from entrodrop_bench.paths import Layout
from entrodrop_bench.pipeline import (
    stage_prepare as prepare,  # the whole stage: training only reads its caches
)
from entrodrop_bench.report.selection import select
from entrodrop_bench.report.statistics import weighted_crossed
from entrodrop_bench.report.tables import write_tables
from entrodrop_bench.train.trainer import Trainer

N_DOCS = 120


# --------------------------------------------------------------------------- the trainer writes them
def test_per_document_losses_average_to_the_run_level_loss_across_a_resume(mini_config):
    config = mini_config(train={"checkpoint_every_epochs": 1})
    layout = Layout.from_config(config)
    prepared = prepare(config, layout, echo=lambda s: None)
    first = prepared.plan.checkpoint_steps(1)[0]
    assert first + 1 < prepared.plan.total_steps
    # interrupted after the first checkpoint, then resumed: the rewrite on resume keeps the documents too
    assert Trainer(prepared, "plain", 0, progress=False, stop_after_step=first + 1).train() == "running"
    assert Trainer(prepared, "plain", 0, progress=False).train() == "complete"
    path = ValCurve.path(layout, "plain", 0)
    assert json.loads(path.read_text())["format_version"] == 2
    curve = ValCurve.read(path)
    n_val_docs = len(prepared.target_val)
    assert curve.doc_ids == sorted(set(curve.doc_ids)) and set(curve.doc_ids) <= set(range(n_val_docs))
    assert len(curve.doc_ids) >= n_val_docs - 1 and min(curve.doc_tokens) >= 1
    # every label token belongs to one document: the counts add up to the validation split's label tokens
    assert sum(curve.doc_tokens) == int(Trainer(prepared, "plain", 0)._validation_set().groups["overall"].sum())
    assert len(curve.points) >= 3
    w = np.array(curve.doc_tokens, dtype=float)
    for point in curve.points:
        losses = np.array(point.doc_losses)
        assert losses.shape == w.shape
        assert float((losses * w).sum() / w.sum()) == pytest.approx(point.overall, rel=1e-5)
    # the model learns: documents' losses move between step 0 and the end
    assert not np.allclose(curve.points[0].doc_losses, curve.points[-1].doc_losses)


# --------------------------------------------------------------------------- the statistic
def _docs(rng: np.random.Generator, n: int = N_DOCS) -> tuple[np.ndarray, np.ndarray]:
    """(token counts, per-document losses) of a validation set: documents of varied length and difficulty."""
    return rng.integers(20, 200, size=n).astype(float), rng.normal(2.0, 0.4, size=n)


def test_weighted_interval_is_the_token_weighted_loss_and_finds_a_planted_difference():
    rng = np.random.default_rng(0)
    w, base = _docs(rng)
    res = weighted_crossed(base, w)
    assert res.estimate == pytest.approx(float((base * w).sum() / w.sum()))
    assert res.ci_low < res.estimate < res.ci_high and res.level == "items only"
    better = base - 0.05 + rng.normal(0, 0.02, size=N_DOCS)  # lower by a known margin, document by document
    diff = weighted_crossed(better, w, base)
    assert diff.ci_high < 0 and diff.p_value < 0.01
    assert diff.ci_low < -0.05 < diff.ci_high
    same = base + rng.normal(0, 0.02, size=N_DOCS)  # no effect, only noise
    null = weighted_crossed(same, w, base)
    assert null.ci_low < 0 < null.ci_high and null.p_value > 0.05


def test_with_no_effect_the_interval_covers_zero_at_least_95_percent_of_the_time_with_seed_spread():
    rng = np.random.default_rng(11)
    w, base = _docs(rng)
    covered = {1: [], 3: []}
    for _ in range(400):
        for seeds in covered:
            # each training seed's run lands 0.03 nats apart (sd), on top of per-document noise
            a = base + rng.normal(0, 0.03, (seeds, 1)) + rng.normal(0, 0.05, (seeds, N_DOCS))
            b = base + rng.normal(0, 0.03, (seeds, 1)) + rng.normal(0, 0.05, (seeds, N_DOCS))
            res = weighted_crossed(a, w, b)
            covered[seeds].append(res.ci_low < 0 < res.ci_high)
    assert np.mean(covered[3]) >= 0.93, np.mean(covered[3])  # 95% - 3 sd at 400 repeats
    assert np.mean(covered[1]) < 0.8, "one seed covers the documents only, not another seed"


def test_weighted_interval_with_several_seeds_holds_seed_spread_and_is_wider_than_one_seed():
    rng = np.random.default_rng(3)
    w, base = _docs(rng)
    # three training seeds whose effect differs (-0.09, -0.05, -0.01): seed-to-seed spread on top of documents
    a = np.stack([base - d + rng.normal(0, 0.02, size=N_DOCS) for d in (0.09, 0.05, 0.01)])
    b = np.stack([base] * 3)
    res = weighted_crossed(a, w, b)
    assert res.estimate == pytest.approx(-0.05, abs=0.01) and res.level == "seeds and items"
    one = weighted_crossed(a[1], w, b[1])
    assert res.ci_high - res.ci_low > 2 * (one.ci_high - one.ci_low)
    with pytest.raises(ValueError, match="one weight per document"):
        weighted_crossed(a, w[:-1], b)


# --------------------------------------------------------------------------- select and Table 4
GAMMA_METHODS = {
    "plain": {"plugin": "plain"},
    "entrodrop": {"plugin": "entrodrop", "params": {"gamma_max": 0.1}},
    "entrodrop_gamma": {"plugin": "entrodrop", "grid": {"gamma_max": [0.2]}, "table": "gamma"},
}
GAMMA_RUN = "entrodrop_gamma@gamma_max=0.2"


def _write_doc_curve(layout: Layout, run: str, seed: int, epochs: list[float], losses: list[np.ndarray],
                     w: np.ndarray) -> None:
    """A format-2 curve: per-document losses at every point (step 10 x index), run-level losses consistent."""
    points = []
    for i, (epoch, x) in enumerate(zip(epochs, losses)):
        overall = float((x * w).sum() / w.sum())
        points.append(ValPoint(step=10 * i, target_epoch=epoch, overall=overall, low_entropy=overall / 4,
                               high_entropy=overall * 2, doc_losses=x.tolist()))
    ValCurve(points=points, doc_ids=list(range(0, 2 * len(w), 2)), doc_tokens=w.astype(int).tolist()).write(
        ValCurve.path(layout, run, seed))


def _store(tmp_path, margins: dict[str, float], seeds=(0,), best: dict | None = None):
    """Table 4's runs (Baseline, gamma 0.1, gamma 0.2) whose curves reach their minimum at `best[run][seed]`
    (an index into 4 points), where each method's per-document losses are the Baseline's minus its margin."""
    config = make_config(tmp_path, methods=GAMMA_METHODS, seeds=seeds, domains={"math": ["gsm8k", "svamp"]})
    layout = Layout.from_config(config)
    rng = np.random.default_rng(0)  # the no-effect run's interval covers 0 here (it does in ~95% of seeds)
    w, base = _docs(rng)
    epochs = [0.0, 3.0, 6.0, 9.0]
    for seed in seeds:
        for run, margin in margins.items():
            params = {"gamma_max": float(run.split("=")[1])} if "=" in run else {}
            at = (best or {}).get(run, {}).get(seed, 2)
            curve = [base + 1.0 + 0.1 * abs(i - at) - margin + rng.normal(0, 0.01, N_DOCS) for i in range(4)]
            write_run(layout, run, seed, [(10 * i, epochs[i], scores(0.4, 0.5), None) for i in (1, 2, 3)],
                      params=params, plugin="plain" if run == "plain" else "entrodrop")
            _write_doc_curve(layout, run, seed, epochs, curve, w)
    return config, layout


def _table4_rows(layout: Layout) -> dict[str, list[str]]:
    lines = (layout.tables_dir / "table4.md").read_text().splitlines()
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines if line.startswith("| ")]
    return {r[0]: r for r in rows[1:]}


def test_table4_shows_intervals_over_documents_and_a_planted_loss_difference(tmp_path):
    config, layout = _store(tmp_path, {"plain": 0.0, "entrodrop": 0.05, GAMMA_RUN: 0.0})
    sel = select(config, layout)
    vm = sel.runs["entrodrop"].aggregate.val_min
    assert vm.documents == N_DOCS and vm.loss.ci95[0] < vm.loss.mean < vm.loss.ci95[1]
    rows = {r.run: r for r in sel.comparisons.tables["table4"].rows}
    planted, null = rows["entrodrop"].val_loss, rows[GAMMA_RUN].val_loss
    assert planted.ci95[1] < 0 and planted.p_holm < 0.05 and planted.difference == pytest.approx(-0.05, abs=0.01)
    assert null.ci95[0] < 0 < null.ci95[1] and null.p_holm > 0.05
    assert rows["entrodrop"].columns  # the benchmark comparisons are still there
    write_tables(config, layout)
    t4 = _table4_rows(layout)
    lo, hi = vm.loss.ci95
    assert t4["γ_max = 0.1"][3] == f"{vm.loss.mean:.3f} [{lo:.3f}, {hi:.3f}]"
    # one seed: the mark is the item-level one (these documents, these two checkpoints)
    assert t4["γ_max = 0.1"][4].endswith("‡") and t4["γ_max = 0.1"][4].startswith("-0.05")
    assert not t4["γ_max = 0.2"][4].endswith("‡") and t4["Baseline (γ = 0)"][4] == "–"
    assert t4["γ_max = 0.1"][2] == "6.0"  # one seed: just the epoch of the minimum
    text = (layout.tables_dir / "table4.md").read_text()
    assert f"; {N_DOCS} validation documents" in text and "One training seed" in text
    tex = (layout.tables_dir / "table4.tex").read_text()
    assert f"{lo:.3f}" in tex and r"$^\ddagger$" in tex
    records = list(csv.DictReader((layout.tables_dir / "table4.csv").open()))
    loss = next(r for r in records if r["run"] == "entrodrop" and r["column"] == "min val loss")
    assert (float(loss["ci95_low"]), float(loss["ci95_high"])) == pytest.approx((lo, hi), abs=1e-6)
    assert loss["ci_over"] == "validation documents"
    diff = next(r for r in records if r["run"] == "entrodrop" and r["column"] == "min val loss vs Baseline")
    assert float(diff["diff_vs_baseline"]) == pytest.approx(planted.difference, abs=1e-4)
    assert float(diff["diff_ci95_high"]) == pytest.approx(planted.ci95[1], abs=1e-4)
    assert float(diff["p_holm"]) == pytest.approx(planted.p_holm, abs=1e-4)


def test_several_seeds_give_a_best_epoch_range_and_hierarchical_intervals(tmp_path):
    best = {"plain": {0: 2, 1: 3}, "entrodrop": {0: 2, 1: 2}, GAMMA_RUN: {0: 1, 1: 3}}
    config, layout = _store(tmp_path, {"plain": 0.0, "entrodrop": 0.05, GAMMA_RUN: 0.02}, seeds=(0, 1), best=best)
    sel = select(config, layout)
    assert sel.runs["plain"].aggregate.val_min.documents == N_DOCS
    assert sel.comparisons.tables["table4"].rows[0].val_loss is not None
    write_tables(config, layout)
    t4 = _table4_rows(layout)
    assert t4["Baseline (γ = 0)"][2] == "6.0->9.0"  # seed 1's minimum is its last point
    assert t4["γ_max = 0.1"][2] == "6.0"  # both seeds agree
    assert t4["γ_max = 0.2"][2] == "3.0->9.0"
    assert " ± " in t4["γ_max = 0.1"][3] and "[" in t4["γ_max = 0.1"][3]
    assert "One training seed" not in (layout.tables_dir / "table4.md").read_text()
    records = list(csv.DictReader((layout.tables_dir / "table4.csv").open()))
    epoch = next(r for r in records if r["run"] == GAMMA_RUN and r["column"] == "best epoch")
    assert (float(epoch["range_low"]), float(epoch["range_high"]), epoch["n_seeds"]) == (3.0, 9.0, "2")


def test_a_format_1_curve_gives_no_interval_and_says_why(tmp_path):
    config, layout = _store(tmp_path, {"plain": 0.0, "entrodrop": 0.05, GAMMA_RUN: 0.0})
    path = ValCurve.path(layout, "entrodrop", 0)
    points = [p.model_dump(exclude={"doc_losses"}) for p in ValCurve.read(path).points]
    path.write_text(json.dumps(points))  # what every version before format 2 wrote
    sel = select(config, layout)
    vm = sel.runs["entrodrop"].aggregate.val_min
    assert vm.documents is None and vm.loss.ci95 is None
    rows = {r.run: r for r in sel.comparisons.tables["table4"].rows}
    assert rows["entrodrop"].val_loss is None and rows[GAMMA_RUN].val_loss is not None
    write_tables(config, layout)
    t4 = _table4_rows(layout)
    assert "[" not in t4["γ_max = 0.1"][3] and t4["γ_max = 0.1"][4] == "–"
    assert "no interval over validation documents for entrodrop" in (layout.tables_dir / "table4.md").read_text()
