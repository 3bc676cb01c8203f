"""Pick each method's representative checkpoint from the results store.

Reads only files on disk (checkpoint manifests, val_curve.json, status.json, the eval store), so it does
not depend on the training or evaluation code. Rules:

- Every checkpoint gets per-domain averages of its benchmark scores (x100). A checkpoint with any missing
  or non-finite score is never selected; every missing (checkpoint, benchmark) is listed in `missing`.
- `target_avg` (the paper's rule): the checkpoint with the highest target-domain average.
  `val_loss`: the checkpoint with the lowest held-out validation loss (no test-set selection).
  `heldout`: each benchmark's items are split once, by a seeded hash of the item id
  (`statistics.split_items`, seed `eval.heldout_seed`, over every id the store holds for that benchmark,
  so the split is the same for every method and checkpoint), into a selection half and a report half; the
  checkpoint with the highest target-domain average on the selection half is chosen, and every score of
  the selection (checkpoint rows, averages, intervals, paired comparisons) is on the report half. Results
  without per-item outcomes count as missing.
  Ties go to the earliest step.
- Held-out view (`heldout` fields, every rule but `val_loss`): per seed the held-out pick, its selection-
  and report-half target averages, the paper rule's target average, and the cross-fitted held-out score
  (both directions of `CROSSFIT_SPLITS` item splits, averaged); across seeds the optimism, paper rule minus
  cross-fitted held-out score, which the tables print under `target_avg`.
- Runs whose status is `diverged` are skipped, with their reason, in `skipped`.
- Several seeds: one selection per seed, then mean, sample std and a 95% interval over seeds and items
  (`report.comparisons.score_interval`). One seed: an item-level interval. Without per-item outcomes, a t
  interval over seeds, or none (never a zero-width one).
- Paired comparisons of every table's methods against the Baseline, and Table 3's contrasts
  (`report.comparisons`), from per-item outcomes.
- Everything computed from per-item outcomes goes through `item_statistics`, which `tables --from-items`
  runs again on the committed per-item file (`report.item_outcomes`, `with_item_statistics`), without the runs
  folder.
- Table 4's minimum validation loss: an interval over validation documents, and each row minus the Baseline
  paired by document (`report.val_loss`), from the per-document losses of the validation curves.
- Sweeps: every grid point is aggregated; the method is represented by its best grid point
  (highest mean target average, or lowest mean validation loss under `val_loss`, or highest mean
  selection-half target average under `heldout`); ties go to the first grid point in config order.

`select` is the only stage that computes the selection; it writes `selection.json` (artifacts.Selection)
with a fingerprint of what it read. Tables, figures and the leaderboard read that file through
`read_selection`, which refuses it once the config's selection settings or any file it was computed
from has changed, instead of silently reporting an old selection.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from entrodrop_bench.artifacts import (
    ArtifactError,
    CheckpointManifest,
    CheckpointScores,
    Comparisons,
    EvalResult,
    HeldoutPick,
    HeldoutSummary,
    ItemOutcomes,
    RunSelection,
    RunStatus,
    Selection,
    SelectionInputs,
    Summary,
    ValCurve,
    ValPoint,
    stored_results,
)
from entrodrop_bench.atomic import file_sha256, json_sha256
from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.cost import cost_of
from entrodrop_bench.errors import ConfigError
from entrodrop_bench.paths import Layout
from entrodrop_bench.regularizer import ReportFields
from entrodrop_bench.report import item_outcomes
from entrodrop_bench.report.comparisons import (
    TOTAL,
    Items,
    comparisons,
    run_items,
    score_interval,
    seed_interval,
    store_items,
)
from entrodrop_bench.report.rows import SelectionRows
from entrodrop_bench.report.statistics import (
    CROSSFIT_SPLITS,
    CrossedResult,
    crossfit_select,
    split_items,
    split_masks,
)
from entrodrop_bench.report.val_loss import add_comparisons as add_val_loss_comparisons
from entrodrop_bench.report.val_loss import add_intervals as add_val_loss_intervals

Store = dict[tuple[str, int, int], dict[str, EvalResult | ArtifactError | str]]
NO_ITEMS = ("no per-item outcomes (a result written before they were kept): `entrodrop-bench eval CONFIG` "
            "re-evaluates it under eval.selection: heldout or eval.per_item: true")


# --------------------------------------------------------------------------- reading the store
def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_store(layout: Layout) -> Store:
    """(run, seed, step) -> benchmark -> stored result, or the reason this version cannot read the file."""
    store: Store = {}
    for run, seed, step, benchmark, result in stored_results(layout):
        store.setdefault((run, seed, step), {})[benchmark] = result
    return store


def _manifests(layout: Layout, run: str, seed: int) -> dict[int, CheckpointManifest]:
    return {step: CheckpointManifest.read(CheckpointManifest.path(folder)) for step, folder in layout.checkpoints(run, seed)}


def _val_curve(layout: Layout, run: str, seed: int) -> list[ValPoint]:
    curve = ValCurve.read_or_none(ValCurve.path(layout, run, seed))
    return curve.points if curve else []


def val_minimum(curve: list[ValPoint]) -> dict | None:
    """Lowest overall validation loss on the curve: loss, step, target epoch, and whether it is the last point."""
    points = [p for p in curve if math.isfinite(p.overall)]
    if not points:
        return None
    best = min(points, key=lambda p: (p.overall, p.step))
    last_step = max(p.step for p in points)
    return {
        "loss": best.overall,
        "step": best.step,
        "target_epoch": best.target_epoch,
        "at_end": best.step == last_step and len(points) > 1,
    }


def split_store(store: Store, seed: int) -> tuple[Store, Store]:
    """(selection half, report half) of the store: each result restricted to its benchmark's items of that half,
    its score the mean of those items. Each benchmark's items are split once, over every id the store holds for
    it, so every method and checkpoint sees the same halves. A result without per-item outcomes becomes the
    reason `NO_ITEMS` in both halves (its checkpoint is then incomplete)."""
    ids: dict[str, set[str]] = {}
    for results in store.values():
        for bench, rec in results.items():
            if isinstance(rec, EvalResult) and rec.items is not None:
                ids.setdefault(bench, set()).update(rec.items.ids)
    selecting = _selecting(ids, seed)
    halves: tuple[Store, Store] = ({}, {})
    for key, results in store.items():
        for bench, rec in results.items():
            for half, in_selection in zip(halves, (True, False)):
                half.setdefault(key, {})[bench] = _half(rec, selecting.get(bench, set()), in_selection)
    return halves


def _selecting(ids: dict[str, set[str]], seed: int) -> dict[str, set[str]]:
    """Benchmark -> the item ids of its selection half, split once over every id held for it."""
    selecting = {}
    for bench, found in ids.items():
        ordered = sorted(found)
        # One item cannot be split: its selection half is empty, so neither half scores that benchmark.
        selecting[bench] = {i for i, sel in zip(ordered, split_items(ordered, seed)) if sel} if len(ordered) > 1 else set()
    return selecting


def report_half(items: Items, seed: int) -> Items:
    """The report half of per-item outcomes, split exactly as `split_store` splits the store they came from."""
    ids: dict[str, set[str]] = {}
    for results in items.values():
        for bench, found in results.items():
            ids.setdefault(bench, set()).update(found)
    selecting = _selecting(ids, seed)
    out: Items = {}
    for key, results in items.items():
        for bench, found in results.items():
            kept = {i: x for i, x in found.items() if i not in selecting[bench]}
            if kept:
                out.setdefault(key, {})[bench] = kept
    return out


def _half(rec: EvalResult | ArtifactError | str, selecting: set[str], in_selection: bool) -> EvalResult | ArtifactError | str:
    if not isinstance(rec, EvalResult):
        return rec
    if rec.items is None:
        return NO_ITEMS
    kept = [(i, x) for i, x in zip(rec.items.ids, rec.items.scores) if (i in selecting) == in_selection]
    score = float(np.mean([x for _, x in kept])) if kept else None
    return rec.model_copy(update={"score": score, "items": ItemOutcomes(ids=[i for i, _ in kept], scores=[x for _, x in kept])})


def heldout_pick(halves: tuple[Store, Store], store: Store, run: str, seed: int, steps: list[int],
                 domains: dict[str, list[str]], target_domain: str) -> dict | None:
    """The held-out view of one (run, seed) (artifacts.HeldoutPick), over the checkpoints the paper's rule may pick
    (every benchmark scored); None when one of them lacks per-item outcomes, so both rules see the same ones."""
    def rows(s: Store) -> list[dict]:
        return [_checkpoint_row(step, s.get((run, seed, step), {}), domains, None, None)[0] for step in steps]

    on_selection, on_report, on_all = rows(halves[0]), rows(halves[1]), rows(store)
    if any(a["complete"] and not (h["complete"] and r["complete"]) for a, h, r in zip(on_all, on_selection, on_report)):
        return None
    picked = choose(on_selection, "target_avg", target_domain)
    paper = choose(on_all, "target_avg", target_domain)
    if picked is None or paper is None:
        return None
    report = next(r for r in on_report if r["step"] == picked["step"])
    return {"step": picked["step"], "selection_avg": picked["domain_avg"][target_domain],
            "report_avg": report["domain_avg"][target_domain], "paper_avg": paper["domain_avg"][target_domain]}


# --------------------------------------------------------------------------- one checkpoint
def _checkpoint_row(step: int, results: dict[str, EvalResult | ArtifactError], domains: dict[str, list[str]],
                    manifest: CheckpointManifest | None, curve_point: ValPoint | None) -> tuple[dict, list[tuple[str, str]]]:
    """Scores (x100), domain averages, total average and val loss of one checkpoint; plus its missing benchmarks."""
    scores: dict[str, float | None] = {}
    metrics: dict[str, str | None] = {}
    missing: list[tuple[str, str]] = []
    epoch = None
    for bench in sorted({b for bs in domains.values() for b in bs}):
        record = results.get(bench)
        if not isinstance(record, EvalResult):
            why = record if isinstance(record, str) else f"unreadable result file: {record}" if record else "no result file"
            missing.append((bench, why))
            scores[bench] = None
            continue
        epoch = record.target_epoch
        score = record.score
        metrics[bench] = record.primary_metric
        if not _finite(score):
            missing.append((bench, "score is null" if score is None else f"score is not finite ({score!r})"))
            scores[bench] = None
        else:
            scores[bench] = 100.0 * float(score)
    domain_avg = {
        d: (float(np.mean([scores[b] for b in bs])) if bs and all(scores[b] is not None for b in bs) else None)
        for d, bs in domains.items()
    }
    complete = all(v is not None for v in domain_avg.values())
    val_loss = None
    if manifest:
        val_loss = manifest.val_loss.get("overall")
    elif curve_point:
        val_loss = curve_point.overall
    if epoch is None:
        epoch = manifest.target_epoch if manifest else curve_point.target_epoch if curve_point else None
    row = {
        "step": step,
        "target_epoch": epoch,
        "scores": scores,
        "metrics": metrics,
        "domain_avg": domain_avg,
        "total_avg": float(np.mean(list(domain_avg.values()))) if complete and domain_avg else None,
        "val_loss": float(val_loss) if _finite(val_loss) else None,
        "trained_at_commit": manifest.git_commit if manifest else None,
        "complete": complete,
    }
    return row, missing


def choose(rows: list[dict], rule: str, target_domain: str) -> dict | None:
    """The representative checkpoint among complete rows; ties go to the earliest step."""
    if rule == "target_avg":
        eligible = [r for r in rows if r["complete"]]
        return min(eligible, key=lambda r: (-r["domain_avg"][target_domain], r["step"]), default=None)
    eligible = [r for r in rows if r["complete"] and r["val_loss"] is not None]
    return min(eligible, key=lambda r: (r["val_loss"], r["step"]), default=None)


# --------------------------------------------------------------------------- one run, one seed
def _logged(status: RunStatus | None, key: str | None) -> float | None:
    """A declared log value's run average (None: not declared, or not logged)."""
    return status.stats.get(key) if status and key else None


def select_seed(layout: Layout, store: dict, run: str, seed: int, domains: dict[str, list[str]], rule: str,
                target_domain: str, halves: tuple[Store, Store] | None = None,
                report: ReportFields | None = None) -> tuple[dict | None, str | None, list[dict]]:
    """(per-seed record, skip reason, missing list) of one training run. `halves` (`split_store`) give the held-out
    view; under `heldout` the checkpoint rows are scored on the report half. `report`: what the run's plugin declares
    it reports (its masked and gated fractions' log keys)."""
    status = RunStatus.read_or_none(RunStatus.path(layout, run, seed))
    state = status.state if status else None
    if status and status.state == "diverged":
        return None, f"diverged: {status.reason or 'no reason recorded'}", []
    manifests = _manifests(layout, run, seed)
    curve = _val_curve(layout, run, seed)
    by_step = {p.step: p for p in curve}
    steps = sorted({s for (r, k, s) in store if r == run and k == seed})
    if not steps:
        why = "no evaluated checkpoints in the results store"
        return None, why if state else f"{why} and no status.json (not trained?)", []
    shown = halves[1] if rule == "heldout" else store
    rows, missing = [], []
    for step in steps:
        row, miss = _checkpoint_row(step, shown[(run, seed, step)], domains, manifests.get(step), by_step.get(step))
        rows.append(row)
        missing += [{"run": run, "seed": seed, "step": step, "benchmark": b, "reason": why} for b, why in miss]
    pick = heldout_pick(halves, store, run, seed, steps, domains, target_domain) if halves else None
    if rule == "heldout":
        chosen = next((r for r in rows if pick and r["step"] == pick["step"]), None)
    else:
        chosen = choose(rows, rule, target_domain)
    record = {
        "state": state or "unknown",
        "selected": chosen,
        "checkpoints": rows,
        "val_min": val_minimum(curve),
        "masked_fraction": _logged(status, report and report.masked_fraction),
        "gated_fraction": _logged(status, report and report.gated_fraction),
        "resolved": dict(status.resolved) if status else {},
        "heldout": pick,
        "cost": cost_of(status, [r for (r_, k, _), found in store.items() if (r_, k) == (run, seed)
                                 for r in found.values() if isinstance(r, EvalResult)]),
    }
    if chosen is None:
        needs = {"target_avg": "", "val_loss": " and a validation loss",
                 "heldout": " with per-item outcomes (held-out selection)"}[rule]
        return record, f"no checkpoint with every benchmark scored{needs}", missing
    return record, None, missing


# --------------------------------------------------------------------------- across seeds
def summarize(values: list[float], interval: CrossedResult | None = None) -> dict:
    """mean, sample std (0 for one seed), 95% interval and n. The interval is `interval`'s (over seeds and items,
    or items with one seed), centred on the mean of `values` (the harness's own aggregate may differ from the
    item mean in the last digits); without one, a t interval over seeds, or None (never zero-width)."""
    arr = np.asarray(values, dtype=float)
    if interval is not None:
        half = (interval.ci_high - interval.ci_low) / 2
        ci, over = [float(arr.mean() - half), float(arr.mean() + half)], interval.level
    else:
        ci = seed_interval(values)
        over = "seeds" if ci else None
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "ci95": ci,
            "n": int(arr.size), "ci_over": over}


def aggregate(per_seed: dict[int, dict]) -> dict | None:
    """Mean/std/interval across the seeds that have a selected checkpoint; the intervals from per-item outcomes
    are set by `item_statistics`."""
    chosen = {s: r["selected"] for s, r in sorted(per_seed.items()) if r and r.get("selected")}
    if not chosen:
        return None
    sel = list(chosen.values())
    out: dict[str, Any] = {
        "seeds": list(chosen),
        "scores": {b: summarize([r["scores"][b] for r in sel]) for b in sel[0]["scores"]},
        "domain_avg": {d: summarize([r["domain_avg"][d] for r in sel]) for d in sel[0]["domain_avg"]},
        "total_avg": summarize([r["total_avg"] for r in sel]),
        "step": [r["step"] for r in sel],
        "target_epoch": [r["target_epoch"] for r in sel],
    }
    picks = [per_seed[s].get("heldout") for s in chosen]
    summary = _heldout_summary([None if p is None else HeldoutPick.model_validate(p) for p in picks])
    out["heldout"] = summary and summary.model_dump()  # the best grid point's rule reads it while assembling
    losses = [r["val_loss"] for r in sel if r["val_loss"] is not None]
    out["val_loss"] = summarize(losses) if len(losses) == len(sel) else None
    mins = [per_seed[s]["val_min"] for s in chosen if per_seed[s].get("val_min")]
    if mins:
        out["val_min"] = {
            "loss": summarize([m["loss"] for m in mins]),
            "target_epoch": summarize([m["target_epoch"] for m in mins if _finite(m["target_epoch"])])
            if all(_finite(m["target_epoch"]) for m in mins) else None,
            "at_end": any(m["at_end"] for m in mins),
        }
    return out


def _heldout_summary(picks: list[HeldoutPick | None]) -> HeldoutSummary | None:
    """Mean over seeds of their held-out picks; None unless every seed has one."""
    if not picks or any(p is None for p in picks):
        return None
    steps = [p.step for p in picks]
    selection_avg = float(np.mean([p.selection_avg for p in picks]))
    report_avg = float(np.mean([p.report_avg for p in picks]))
    paper_avg = float(np.mean([p.paper_avg for p in picks]))
    if any(p.crossfit_avg is None for p in picks):
        return HeldoutSummary(step=steps, selection_avg=selection_avg, report_avg=report_avg, paper_avg=paper_avg,
                              optimism=paper_avg - report_avg)
    crossfit = float(np.mean([p.crossfit_avg for p in picks]))
    return HeldoutSummary(step=steps, selection_avg=selection_avg, report_avg=report_avg, paper_avg=paper_avg,
                          crossfit_avg=crossfit, optimism=paper_avg - crossfit)


# --------------------------------------------------------------------------- statistics from per-item outcomes
def crossfit_view(items: Items, run: str, seed: int, steps: list[int], benchmarks: list[str], heldout_seed: int
                  ) -> tuple[float, int] | None:
    """(cross-fitted held-out target average x100, splits) of one (run, seed) over the checkpoints `steps` (those
    the paper's rule may pick); None when one lacks the target benchmarks' per-item outcomes."""
    blocks, masks = [], []
    for bench in benchmarks:
        found = [items.get((run, seed, step), {}).get(bench) for step in steps]
        if not steps or any(f is None for f in found):
            return None
        common = sorted(set.intersection(*(set(f) for f in found)))
        if len(common) < 2:
            return None
        blocks.append(100.0 * np.array([[f[i] for i in common] for f in found]))
        masks.append(_split_masks(tuple(common), heldout_seed))
    fit = crossfit_select(blocks, masks)
    return fit.heldout, fit.splits


@functools.lru_cache(maxsize=64)
def _split_masks(ids: tuple[str, ...], seed: int) -> np.ndarray:
    """`split_masks` over CROSSFIT_SPLITS splits, once per benchmark's item ids (every run and seed shares them)."""
    return split_masks(ids, seed, CROSSFIT_SPLITS)


def _with_crossfit(run: str, record: RunSelection, target: list[str], items: Items, heldout_seed: int
                   ) -> RunSelection:
    """The run with each seed's held-out view given its cross-fitted score (over the target domain's benchmarks
    `target`), and its aggregate's optimism recomputed from them."""
    seeds = {}
    for seed, rec in record.seeds.items():
        if rec.heldout is not None:
            steps = [c.step for c in rec.checkpoints if c.complete]
            view = crossfit_view(items, run, int(seed), steps, target, heldout_seed)
            fit = {"crossfit_avg": view and view[0], "crossfit_splits": view and view[1]}
            rec = rec.model_copy(update={"heldout": rec.heldout.model_copy(update=fit)})
        seeds[seed] = rec
    agg = record.aggregate
    if agg is not None:
        agg = agg.model_copy(update={"heldout": _heldout_summary([seeds[str(s)].heldout for s in agg.seeds])})
    return record.model_copy(update={"seeds": seeds, "aggregate": agg})


def _with_intervals(run: str, record: RunSelection, domains: dict[str, list[str]], items: Items) -> RunSelection:
    """The run with every aggregate score and average given its interval over seeds and items (items only with
    one seed)."""
    agg = record.aggregate
    if agg is None:
        return record
    benchmarks = [b for bs in domains.values() for b in bs]
    rows = [record.seeds[str(s)].selected for s in agg.seeds]
    found, _ = run_items(items, run, {s: r.step for s, r in zip(agg.seeds, rows)}, benchmarks)
    if len(found) != len(rows):
        found = {}  # a seed without any per-item outcomes: no interval over seeds and items can be had
    summaries = {"scores": {c: _column_summary(rows, found, domains, c) for c in agg.scores},
                 "domain_avg": {c: _column_summary(rows, found, domains, c) for c in agg.domain_avg},
                 "total_avg": _column_summary(rows, found, domains, TOTAL)}
    return record.model_copy(update={"aggregate": agg.model_copy(update=summaries)})


def _column_summary(rows: list[CheckpointScores], found: dict, domains: dict[str, list[str]], column: str) -> Summary:
    interval = score_interval(found, domains, column) if found else None
    return Summary.model_validate(summarize([_column_value(r, column) for r in rows], interval))


def _column_value(row: CheckpointScores, column: str) -> float:
    if column == TOTAL:
        return row.total_avg
    return row.domain_avg[column] if column in row.domain_avg else row.scores[column]


def item_statistics(rows: SelectionRows, rule: str, domains: dict[str, list[str]], items: Items, heldout_seed: int,
                    before: Comparisons | None = None) -> tuple[dict[str, RunSelection], Comparisons]:
    """Everything a selection computes from per-item outcomes: its runs with cross-fitted optimism (on every
    item) and intervals, and the paired comparisons (both on the report half under `heldout`). Table 4's
    validation-loss differences (which come from the validation curves, not from items) are kept from `before`,
    the comparisons being replaced."""
    shown = report_half(items, heldout_seed) if rule == "heldout" else items
    target = domains[rows.target_domain]
    runs = {run: _with_intervals(run, _with_crossfit(run, record, target, items, heldout_seed), domains, shown)
            for run, record in rows.runs.items()}
    compared = comparisons(SelectionRows(rows.methods, runs, rows.target_domain), domains, shown)
    table4 = before.tables.get("table4") if before else None
    if table4 and "table4" in compared.tables:
        val = {r.run: r.val_loss for r in table4.rows}
        for row in compared.tables["table4"].rows:
            row.val_loss = val.get(row.run)
    return runs, compared


def with_item_statistics(selection: Selection, items: Items, heldout_seed: int) -> Selection:
    """`selection` with everything that comes from per-item outcomes recomputed from `items` (`item_statistics`)."""
    rows = SelectionRows(selection.methods, selection.runs, selection.target_domain)
    runs, compared = item_statistics(rows, selection.rule, selection.domains, items, heldout_seed,
                                     selection.comparisons)
    return selection.model_copy(update={"runs": runs, "comparisons": compared})


def _best_grid_point(runs: dict[str, dict], rule: str, target_domain: str) -> str | None:
    scored = [(name, r["aggregate"]) for name, r in runs.items() if r.get("aggregate")]
    if rule == "val_loss":
        scored = [(n, a) for n, a in scored if a.get("val_loss")]
        key = [a["val_loss"]["mean"] for _, a in scored]
    elif rule == "heldout":  # on the selection half too: the report half never picks anything
        scored = [(n, a) for n, a in scored if a.get("heldout")]
        key = [-a["heldout"]["selection_avg"] for _, a in scored]
    else:
        key = [-a["domain_avg"][target_domain]["mean"] for _, a in scored]
    if not scored:
        return None
    return scored[min(range(len(scored)), key=lambda i: (key[i], i))][0]


# --------------------------------------------------------------------------- public API
def weak_isolation(store: Store) -> dict[str, list[str]]:
    """Sandbox level -> benchmarks whose generated code ran without bubblewrap (eval.allow_weak_isolation)."""
    out: dict[str, set[str]] = {}
    for results in store.values():
        for bench, rec in results.items():
            level = getattr(rec.provenance, "sandbox", None) if isinstance(rec, EvalResult) else None
            if level and level != "bwrap":
                out.setdefault(str(level), set()).add(bench)
    return {level: sorted(b) for level, b in sorted(out.items())}


def compute_selection(config: ExperimentConfig, layout: Layout) -> Selection:
    """The selection (see module docstring), without writing it."""
    return _compute(config, layout)[0]


def _compute(config: ExperimentConfig, layout: Layout) -> tuple[Selection, Items]:
    """The selection, and the per-item outcomes of the config's runs it was computed from."""
    domains = config.eval.domains
    if not domains:
        raise ConfigError("eval.domains is empty: selection needs domain -> benchmarks (e.g. math: [gsm8k, svamp])")
    rule, target = config.eval.selection, config.eval.target_domain
    inputs = selection_inputs(config, layout)  # before reading: a file changed meanwhile then reads as stale
    store = load_store(layout)
    halves = split_store(store, config.eval.heldout_seed) if rule != "val_loss" else None
    runs: dict[str, dict] = {}
    skipped, missing = [], []
    for run, spec in config.runs.items():
        per_seed: dict[int, dict] = {}
        for seed in config.train.seeds:
            record, reason, miss = select_seed(layout, store, run, seed, domains, rule, target, halves, spec.report)
            missing += miss
            if reason:
                skipped.append({"run": run, "seed": seed, "reason": reason})
            if record is not None:
                per_seed[seed] = record
        runs[run] = {
            "method": spec.method,
            "plugin": spec.plugin,
            "params": spec.params,
            "role": spec.role.as_dict(),  # the plugin's declared table role (label, kind, targets, drop_rate)
            "report": spec.report.as_dict(),  # what it declares the report shows (log keys, gate share, series)
            "seeds": {str(s): r for s, r in per_seed.items()},
            "aggregate": aggregate(per_seed),
        }
    methods = {}
    for name, mc in config.methods.items():
        grid = [r for r, v in runs.items() if v["method"] == name]
        methods[name] = {
            "plugin": mc.plugin,
            "role": runs[grid[0]]["role"],
            "table": mc.table or "main",
            "grid_keys": sorted(mc.grid),
            "runs": grid,
            "best_run": _best_grid_point({r: runs[r] for r in grid}, rule, target),
        }
    doc_losses = add_val_loss_intervals(layout, runs)  # Table 4: intervals over validation documents
    rows = SelectionRows.of(methods, runs, target)
    # Only this config's runs and seeds: a shared runs folder may hold another experiment's results.
    items = store_items({k: v for k, v in store.items() if k[0] in config.runs and k[1] in config.train.seeds})
    # Under `heldout` every reported number (intervals and paired comparisons too) is on the report half.
    typed_runs, compared = item_statistics(rows, rule, domains, items, config.eval.heldout_seed)
    add_val_loss_comparisons(compared, doc_losses)
    selection = Selection.model_validate({
        "experiment": config.name,
        "preset": config.preset,
        "rule": rule,
        "target_domain": target,
        "domains": {d: list(bs) for d, bs in domains.items()},
        "seeds": list(config.train.seeds),
        "scale": "scores x100; domain average = mean of its benchmarks; total = mean of domain averages",
        "methods": rows.methods,
        "runs": typed_runs,
        "skipped": skipped,
        "missing": missing,
        "weak_isolation": weak_isolation(store),
        "inputs": inputs,
        "comparisons": compared,
    })
    return selection, items


def select(config: ExperimentConfig, layout: Layout) -> Selection:
    """Compute the selection, write it atomically to `layout.selection_file`, and return it."""
    selection, items = _compute(config, layout)
    item_outcomes.write(layout, items, config.name)
    selection.write(layout.selection_file)
    return selection


# --------------------------------------------------------------------------- reading it back
def input_files(config: ExperimentConfig, layout: Layout) -> list[Path]:
    """Every file selection reads for this config: per (run, seed) its status, validation curve, checkpoint
    manifests and store results."""
    files = []
    for run in config.runs:
        for seed in config.train.seeds:
            files += [f for f in (layout.status_file(run, seed), layout.val_curve_file(run, seed)) if f.is_file()]
            files += [Layout.manifest_file(folder) for _, folder in layout.checkpoints(run, seed)]
            files += layout.run_result_files(run, seed)
    return files


def _config_digest(config: ExperimentConfig) -> str:
    """sha256 of the config settings selection reads (methods as a list: their order breaks ties)."""
    settings = {
        "name": config.name,
        "preset": config.preset,
        "domains": config.eval.domains,
        "rule": config.eval.selection,
        "heldout_seed": config.eval.heldout_seed,
        "target_domain": config.eval.target_domain,
        "seeds": list(config.train.seeds),
        "methods": [[name, mc.model_dump(mode="json")] for name, mc in config.methods.items()],
    }
    return json_sha256(settings)


def selection_inputs(config: ExperimentConfig, layout: Layout) -> SelectionInputs:
    """The fingerprint of what a selection for this config reads now (see `read_selection`)."""
    files = {str(f.relative_to(layout.runs_dir)): file_sha256(f) for f in input_files(config, layout)}
    return SelectionInputs(config=_config_digest(config), files=files)


def _changes(then: SelectionInputs, now: SelectionInputs) -> str:
    """What differs between two fingerprints, in words (a few files named)."""
    if then.config != now.config:
        return ("the config's selection settings (name, preset, eval.domains, eval.selection, eval.target_domain, "
                "train.seeds or methods) changed")
    changed = [f"{f} changed" for f in sorted(then.files.keys() & now.files.keys()) if then.files[f] != now.files[f]]
    changed += [f"{f} is new" for f in sorted(now.files.keys() - then.files.keys())]
    changed += [f"{f} was removed" for f in sorted(then.files.keys() - now.files.keys())]
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return f"{len(changed)} file(s) it was computed from changed since ({'; '.join(changed[:3])}{more})"


def read_selection(config: ExperimentConfig, layout: Layout) -> Selection:
    """selection.json as `select` wrote it, for the stages that report from it. Raises ArtifactError, naming the
    file and `entrodrop-bench select CONFIG`, when it is missing, unreadable, or stale: written for other
    selection settings, or from training/evaluation files that have changed since."""
    path = layout.selection_file
    selection = Selection.read(path)
    now = selection_inputs(config, layout)
    if selection.inputs != now:
        raise ArtifactError(f"{path} is out of date: {_changes(selection.inputs, now)}; run `entrodrop-bench select "
                            f"CONFIG` to recompute it")
    return selection


