"""Paper Tables 1-4 from the selection `select` wrote, as Markdown, LaTeX and CSV under `layout.tables_dir`.

Conventions (checked against the paper's printed numbers):
- scores x100; benchmarks to 1 decimal, averages to 2 decimals; Total Avg = mean of the domain averages.
- an Avg cell carries the *relative* change vs the Baseline in percent, computed from the printed
  2-decimal averages (paper Table 2: 30.67 vs 29.00 -> +5.76%; Table 1: 44.74 vs 44.52 -> +0.49%).
- Table 3's deltas are absolute points vs random masking, from the unrounded averages; its own questions
  (EntroDrop vs rate-matched random masking, low vs high entropy) are tested under it (`contrasts`).
- Table 3's online rows (low-signal masking with a gate refreshed during training, `online_signal`) and its
  rate-matched row appear only where such a method is configured; the paper has none of them (its columns: `–`).
- with several seeds a cell reads `mean ± std`; the CSV adds the 95% interval over seeds and items (`ci_over`).
- paper presets (not `tiny`) get the paper's value and the difference beside each reproduced average.
- `Masked (realized)`: each token-dropout run's realized masked fraction of eligible target tokens (the log value its
  plugin declares as its masked fraction, averaged over its steps, then over seeds); `–` for methods that declare none.
- an average marked † differs from the Baseline's (Holm-adjusted p < 0.05 over seeds and items, computed by
  `select`); with one training seed the mark is ‡, item-level only: two checkpoints differ, not two methods.
  Every table with comparisons says what its marks mean and prints each column's minimum detectable effect.
  The CSV carries the difference, its 95% CI, p, the Holm-adjusted p, the MDE and the level.
- Table 4's minimum validation loss carries a 95% interval over seeds and validation documents, and its
  difference from the Baseline's a paired one (`report.val_loss`); the best epoch is a range across seeds.
  CSV: `ci_over` says what a ci95 covers, `range_low`/`range_high` the best epoch's range.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from entrodrop_bench.artifacts import (
    Aggregate,
    AggregateValMinimum,
    MethodSelection,
    PairedDifference,
    Selection,
    Summary,
)
from entrodrop_bench.atomic import write_text
from entrodrop_bench.config import ExperimentConfig
from entrodrop_bench.paths import PAPER_REFERENCE, Layout
from entrodrop_bench.report.comparisons import SCORE_INTERVAL, TOTAL, seed_level, significant
from entrodrop_bench.report.rows import (
    baseline_method,
    gamma_runs,
    has_gamma_table,
    has_targeting_table,
    main_methods,
    main_table_name,
    role_runs,
)
from entrodrop_bench.report.selection import read_selection
from entrodrop_bench.report.statistics import ITEMS_ONLY, SEEDS_AND_ITEMS
from entrodrop_bench.report.val_loss import TEST as VAL_LOSS_TEST

DASH = "–"
CSV_FIELDS = ["table", "method", "label", "run", "column", "mean", "std", "ci95_low", "ci95_high", "n_seeds",
              "relative_pct", "delta_points", "paper", "diff_vs_paper",
              "diff_vs_baseline", "diff_ci95_low", "diff_ci95_high", "p", "p_holm", "ci_over", "range_low", "range_high",
              "mde", "level"]
MARK = "†"
ITEM_MARK = "‡"
"""One seed: Holm-adjusted p < 0.05 that two checkpoints differ on these items (not a statement about methods)."""
MASKED = "Masked (realized)"
MASKED_NOTE = (f"{MASKED}: share of eligible target tokens (not a document's first token, not special) whose input "
               "embedding the run masked, logged per step and averaged over the run (and over seeds); – for methods "
               "that mask nothing.")


@dataclass
class Table:
    """One rendered table: header, string cells, notes, and long-format CSV records."""

    name: str
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    extra: list[Table] = field(default_factory=list)


# --------------------------------------------------------------------------- number formatting
def r2(x: float) -> float:
    """Round half away from zero at 2 decimals, as printed (avoids binary-float surprises like 48.565)."""
    return math.floor(abs(x) * 100 + 0.5 + 1e-9) / 100 * (1 if x >= 0 else -1)


def relative_pct(value: float, base: float) -> float | None:
    """Relative change in percent between the printed 2-decimal averages (the paper's convention)."""
    b = r2(base)
    return None if b == 0 else (r2(value) / b - 1) * 100


def fmt_num(x: float | None, decimals: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return DASH
    if decimals == 2:
        x = r2(x)
    return f"{x:.{decimals}f}"


def fmt_cell(summary: Summary | None, decimals: int) -> str:
    """`mean` for one seed, `mean ± std` for several."""
    if not summary:
        return DASH
    text = fmt_num(summary.mean, decimals)
    return f"{text} ± {summary.std:.{decimals}f}" if summary.n > 1 else text


def fmt_p(p: float) -> str:
    """`= 0.042`, `< 0.001`."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def fmt_rel(pct: float | None) -> str:
    return "" if pct is None else f" ({pct:+.2f}%)"


def label(method: str, entry: MethodSelection) -> str:
    """A method's row label from its selection entry: its plugin's table-role label, plus the method's name when
    that differs from the plugin's (e.g. `+EntroDrop (entrodrop_high)`)."""
    text = entry.role.label
    return text if method == entry.plugin else f"{text} ({method})"


def proposed_method(selection: Selection) -> str | None:
    """The proposed method of the main table (the first whose plugin's table role is `proposed`, with a gate fixed
    before training: an online gate is Table 3's, not the paper's EntroDrop)."""
    return next((n for n, m in selection.methods.items() if m.role.kind == "proposed" and m.table == "main"
                 and not m.role.online_signal), None)


def setting(params: dict, grid_keys: list[str]) -> str:
    return ", ".join(f"{k}={params[k]}" for k in grid_keys) if grid_keys else ""


# --------------------------------------------------------------------------- paper reference
def paper_reference() -> dict:
    return json.loads(PAPER_REFERENCE.read_text())


def _paper_block(config: ExperimentConfig, table: int) -> dict | None:
    """The paper's numbers for this preset and table, when the config reproduces a paper setting."""
    if config.preset == "tiny" or config.paper_table is None:
        return None
    wanted = {1: {1}, 2: {2}, 3: {3, 4}, 4: {3, 4}}.get(config.paper_table, set())
    if table not in wanted:
        return None
    return paper_reference().get(f"table{table}", {}).get(config.preset)


# --------------------------------------------------------------------------- helpers on the selection
def _record(table: str, method: str, lab: str, run: str | None, column: str, summary: Summary | None, **extra) -> dict:
    rec = {k: "" for k in CSV_FIELDS}
    rec.update(table=table, method=method, label=lab, run=run or "", column=column)
    if summary:
        rec.update(mean=f"{summary.mean:.6f}", std=f"{summary.std:.6f}", n_seeds=summary.n)
        if summary.ci95:
            rec.update(ci95_low=f"{summary.ci95[0]:.6f}", ci95_high=f"{summary.ci95[1]:.6f}", ci_over=summary.ci_over or "")
    rec.update({k: ("" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)) for k, v in extra.items()})
    return rec


def masked_summary(selection: Selection, run: str | None) -> Summary | None:
    """A token-dropout run's realized masked fraction across its seeds (mean, sample std, n); None for a run whose
    method masks nothing (it declares no masked fraction) or that logged none."""
    entry = selection.runs.get(run) if run else None
    if not entry or entry.report.masked_fraction is None:
        return None
    values = [rec.masked_fraction for rec in entry.seeds.values() if rec.masked_fraction is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Summary(mean=statistics.fmean(values), std=std, n=len(values), ci95=None)


def fmt_masked(summary: Summary | None) -> str:
    """A masked fraction in percent: `1.84%`, or `1.84 ± 0.02%` over several seeds."""
    if not summary:
        return DASH
    if summary.n > 1:
        return f"{100 * summary.mean:.2f} ± {100 * summary.std:.2f}%"
    return f"{100 * summary.mean:.2f}%"


def _masked_cell(t: Table, method: str, lab: str, run: str | None, selection: Selection) -> str:
    """The row's `Masked (realized)` cell, and its CSV record (a fraction, not percent) when the run masks."""
    summary = masked_summary(selection, run)
    if summary:
        t.records.append(_record(t.name, method, lab, run, "masked fraction", summary))
    return fmt_masked(summary)


def _row_comparisons(selection: Selection, table: str) -> dict[str, dict[str, PairedDifference | None]]:
    """Run -> column -> its paired comparison with the Baseline (None where absent), for one table."""
    found = selection.comparisons.tables.get(table)
    return {r.run: r.columns for r in found.rows} if found else {}


def _comparison_fields(diff: PairedDifference | None) -> dict:
    """The CSV columns of one paired comparison (empty when there is none)."""
    if diff is None:
        return {}
    return {"diff_vs_baseline": diff.difference, "diff_ci95_low": diff.ci95[0], "diff_ci95_high": diff.ci95[1],
            "p": diff.p, "p_holm": diff.p_holm, "mde": diff.mde, "level": diff.level}


def _mark(diff: PairedDifference | None) -> str:
    """† over seeds and items; ‡ with one seed (item-level only); nothing when not significant."""
    if not significant(diff):
        return ""
    return MARK if seed_level(diff) or diff.level is None else ITEM_MARK


def _columns_mde(rows: dict[str, dict[str, PairedDifference | None]], columns: list[tuple[str, str]]) -> str:
    """`math Avg 20.4, ...`: per column the median over the rows of their minimum detectable effects."""
    parts = []
    for key, name in columns:
        # A zero MDE is a row identical to the Baseline on every item (no spread to scale): no information.
        found = [d.mde for cols in rows.values() if (d := cols.get(key)) is not None and d.mde]
        if found:
            parts.append(f"{name} {statistics.median(found):.1f}")
    return ", ".join(parts)


def _comparison_notes(selection: Selection, table: str, columns: list[tuple[str, str]],
                      extra: list[PairedDifference] | None = None) -> list[str]:
    """What a mark means (always, when the table has comparisons), each column's minimum detectable effect, and
    what is absent for lack of per-item outcomes. `columns`: (comparison key, printed column name); `extra`: other
    marked differences of the table (Table 4's validation losses)."""
    rows = _row_comparisons(selection, table)
    found = [d for cols in rows.values() for d in cols.values() if d is not None] + (extra or [])
    comp = selection.comparisons
    if not found:
        return ["No significance marks: no row has the per-item outcomes a comparison with the Baseline needs."
                if comp.baseline_run else "No significance marks: no Baseline to compare with."]
    seeds = sorted({len(r.seeds) for r in comp.tables[table].rows})
    notes = []
    if any(d.level != ITEMS_ONLY for d in found):
        notes.append(f"{MARK}: Holm-adjusted p < {comp.alpha:g} vs the Baseline over training seeds and test items "
                     f"({comp.test}). No mark: no difference shown, which is not the same as no difference.")
    if any(d.level == ITEMS_ONLY for d in found):
        notes.append(f"{ITEM_MARK}: item-level only. With one training seed a row compares two checkpoints, not two "
                     f"methods: Holm-adjusted p < {comp.alpha:g} that these checkpoints differ on these items; another "
                     f"training seed can move a score by more (several train.seeds test the methods, marked {MARK}).")
    mde = _columns_mde(rows, columns)
    if mde:
        notes.append(f"Minimum detectable effect (the true difference vs the Baseline found with {comp.mde_power:.0%} "
                     f"power at p < {comp.alpha:g} before Holm's correction; at these items and "
                     f"{'/'.join(map(str, seeds))} seed(s), median over the rows), in points: {mde}. Smaller "
                     f"differences are likely to go unmarked.")
    notes.append("The CSV carries each difference, its 95% interval, p, p_holm, the MDE and the level.")
    return [*notes, *comp.notes]


def _notes(selection: Selection, runs: set[str]) -> list[str]:
    notes = []
    for s in selection.skipped:
        if s.run in runs:
            notes.append(f"skipped {s.run} seed {s.seed}: {s.reason}")
    for run in sorted(runs):
        for seed, rec in (selection.runs[run].seeds if run in selection.runs else {}).items():
            if rec.state not in ("complete", None):
                notes.append(f"{run} seed {seed} is not finished (state {rec.state}); its numbers may still change")
    missing = [m for m in selection.missing if m.run in runs]
    if missing:
        shown = "; ".join(f"{m.run}/seed{m.seed}/checkpoint-{m.step}/{m.benchmark} ({m.reason})" for m in missing[:20])
        more = f" and {len(missing) - 20} more (see selection.json)" if len(missing) > 20 else ""
        notes.append(f"missing metrics, such checkpoints never selected: {shown}{more}")
    for level, benches in (selection.weak_isolation or {}).items():
        notes.append(f"weak sandbox: generated code of {', '.join(benches)} ran under `{level}`, not bubblewrap "
                     f"(eval.allow_weak_isolation), with the host file system open to it")
    return notes


# --------------------------------------------------------------------------- Table 1 / 2
def main_table(config: ExperimentConfig, selection: Selection) -> Table:
    """Rows = methods at their best grid point; columns = benchmarks and averages per domain, Total Avg."""
    target = selection.target_domain
    table_name = main_table_name(selection)
    number = int(table_name.removeprefix("table"))
    domains = [target] + [d for d in selection.domains if d != target]
    headers = ["Method"]
    for d in domains:
        headers += [*selection.domains[d], f"{d} Avg"]
    headers += ["Total Avg", "Setting", "Checkpoint", MASKED]
    rule = {"target_avg": f"highest {target} average",
            "heldout": f"highest {target} average on the selection half of the items, scored on the report half",
            }.get(selection.rule, "lowest validation loss")
    t = Table(table_name, f"Table {number}: {' and '.join(domains)} benchmarks ({selection.experiment})", headers)
    t.notes.append(
        f"Each method at its best grid point; checkpoint with the {rule} (rule `{selection.rule}`). "
        f"Scores x100. Avg cells: relative change vs Baseline in percent. Total Avg = mean of domain averages."
    )
    names = main_methods(selection)
    base = baseline_method(selection)
    base_agg = _best_aggregate(selection, base) if base else None
    paper = _paper_block(config, number)
    compared = _row_comparisons(selection, t.name)
    comparison = []
    for name in names:
        meth = selection.methods[name]
        run = meth.best_run
        agg = selection.runs[run].aggregate if run else None
        lab = label(name, meth)
        ref_scores = ((paper or {}).get("rows", {}).get(name) or (paper or {}).get("rows", {}).get(meth.plugin) or {}).get("scores", {})
        row = [lab]
        for d in domains:
            for b in selection.domains[d]:
                s = agg.scores.get(b) if agg else None
                row.append(fmt_cell(s, 1))
                theirs = ref_scores.get(b)
                diff = None if s is None or theirs is None else round(s.mean - theirs, 2) + 0.0
                t.records.append(_record(t.name, name, lab, run, b, s, paper=theirs, diff_vs_paper=diff))
            row.append(_avg_cell(t, name, lab, run, f"{d} Avg", agg and agg.domain_avg.get(d),
                                 base_agg and base_agg.domain_avg.get(d), name == base, compared.get(run, {}).get(d)))
        row.append(_avg_cell(t, name, lab, run, "Total Avg", agg and agg.total_avg, base_agg and base_agg.total_avg,
                             name == base, compared.get(run, {}).get(TOTAL)))
        row.append(setting(selection.runs[run].params, meth.grid_keys) if run and meth.grid_keys else DASH)
        row.append(_checkpoint_text(agg))
        row.append(_masked_cell(t, name, lab, run, selection))
        t.rows.append(row)
        if paper:
            comparison.append(_paper_row(name, meth.plugin, lab, agg, domains, paper))
    if paper:
        t.extra.append(_comparison_table(t.name, paper, domains, comparison))
        t.records += [rec for _, recs in comparison for rec in recs]
    elif config.preset == "tiny":
        t.notes.append("Preset `tiny`: no paper reference columns (the paper has no tiny setting).")
    t.notes.append(MASKED_NOTE)
    t.notes += _optimism(t, selection, names)
    t.notes += _comparison_notes(selection, t.name, [*[(d, f"{d} Avg") for d in domains], (TOTAL, "Total Avg")])
    t.notes += _notes(selection, {r for n in names for r in selection.methods[n].runs})
    return t


def _optimism(t: Table, selection: Selection, names: list[str]) -> list[str]:
    """Under `target_avg`, each method's optimism (paper-rule target average minus its held-out score) as a note
    and CSV records; nothing when no method has the held-out view (results without per-item outcomes)."""
    if selection.rule != "target_avg":
        return []
    target, parts = selection.target_domain, []
    for name in names:
        meth = selection.methods[name]
        agg = selection.runs[meth.best_run].aggregate if meth.best_run else None
        held = agg and agg.heldout
        if held:
            lab = label(name, meth)
            parts.append(f"{lab} {held.optimism:+.1f}")
            n = len(held.step)
            heldout = "crossfit_avg" if held.crossfit_avg is not None else "report_avg"
            for column, key in (("held-out", heldout), ("optimism", "optimism")):
                t.records.append(_record(t.name, name, lab, meth.best_run, f"{target} Avg {column}",
                                         Summary(mean=getattr(held, key), std=0.0, n=n, ci95=None)))
    if not parts:
        return []
    return [f"Optimism of the paper's rule (it picks and reports on the same test items): {target} Avg under "
            f"`target_avg` minus the held-out score, cross-fitted: the checkpoint picked on one half of each "
            f"benchmark's items is scored on the other half, both ways, over {_splits(selection)} item splits "
            f"(seeded from eval.heldout_seed), averaged; in points: {', '.join(parts)}."]


def _splits(selection: Selection) -> str:
    found = {rec.heldout.crossfit_splits for run in selection.runs.values() for rec in run.seeds.values()
             if rec.heldout and rec.heldout.crossfit_splits}
    return "/".join(map(str, sorted(found))) or "one"


def _best_aggregate(selection: Selection, method: str) -> Aggregate | None:
    m = selection.methods.get(method)
    return selection.runs[m.best_run].aggregate if m and m.best_run else None


def _avg_cell(t: Table, method: str, lab: str, run: str | None, column: str, s: Summary | None,
              base: Summary | None, is_base: bool, diff: PairedDifference | None) -> str:
    rel = None if (is_base or not s or not base) else relative_pct(s.mean, base.mean)
    t.records.append(_record(t.name, method, lab, run, column, s, relative_pct=rel, **_comparison_fields(diff)))
    return fmt_cell(s, 2) + ("" if not s else fmt_rel(rel) + _mark(diff))


def _checkpoint_text(agg: Aggregate | None) -> str:
    if not agg:
        return DASH
    epochs = [e for e in agg.target_epoch if e is not None]
    ep = "/".join(f"{e:.1f}" for e in epochs)
    return "step " + "/".join(str(s) for s in agg.step) + (f" (epoch {ep})" if ep else "")


def _paper_row(name: str, plugin: str, lab: str, agg: Aggregate | None, domains: list[str], paper: dict) -> tuple[list[str], list[dict]]:
    ref = paper["rows"].get(name) or paper["rows"].get(plugin)
    cells, recs = [lab], []
    for col in [*domains, "total"]:
        ours = (agg.total_avg if col == "total" else agg.domain_avg.get(col)) if agg else None
        theirs = (ref or {}).get("avg", {}).get(col)
        diff = None if ours is None or theirs is None else round(r2(ours.mean) - theirs, 2) + 0.0
        cells += [fmt_cell(ours, 2), fmt_num(theirs, 2), DASH if diff is None else f"{diff:+.2f}"]
        recs.append(_record("paper-comparison", name, lab, None, f"{col} Avg", ours, paper=theirs, diff_vs_paper=diff))
    return cells, recs


def _comparison_table(name: str, paper: dict, domains: list[str], rows: list) -> Table:
    headers = ["Method"]
    for col in [*domains, "Total"]:
        headers += [f"{col} Avg (ours)", f"{col} Avg (paper)", "Δ"]
    t = Table(f"{name}-vs-paper", f"Reproduced vs paper ({paper['backbone']})", headers)
    t.rows = [cells for cells, _ in rows]
    t.notes.append("Δ = reproduced minus paper, in points. Paper values are the numbers printed in arXiv 2512.23422.")
    return t


# --------------------------------------------------------------------------- Table 3: targeting ablation
TABLE3_ROWS = [
    ("random", "Random masking", "all tokens"),
    ("random_matched", "Random masking, rate-matched", "all tokens"),
    ("high_entropy", "High-entropy", "top 50% entropy"),
    ("low_entropy", "Low-entropy (EntroDrop)", "bottom 50% entropy"),
    ("online_loss", "Low-signal, online (training loss)", "bottom k, refreshed in training"),
    ("online_entropy", "Low-signal, online (entropy)", "bottom k, refreshed in training"),
]
OPTIONAL_TABLE3_ROWS = ("random_matched", "online_loss", "online_entropy")
"""Rows shown only where a method fills them (the others show a dash when missing, as the paper's rows)."""
ONLINE_NOTE = ("Low-signal, online: EntroDrop's gate recomputed during training, at the method's refresh cadence, "
               "from the model's own per-token training loss (or the entropy of its prediction) recorded in the "
               "training forward pass; target tokens not yet visited keep the base model's signal. k: the run's "
               "gated share per document. The paper has no online row.")


def targeting_table(config: ExperimentConfig, selection: Selection) -> Table | None:
    roles = role_runs(selection)
    if not has_targeting_table(roles):
        return None
    target = selection.target_domain
    paper = _paper_block(config, 3)
    headers = ["Targeting", "Masked tokens", f"Avg {target}", "Δ vs random"] + (["Paper", "Paper Δ", "Ours − paper"] if paper else [])
    headers.append(MASKED)
    t = Table("table3", f"Table 3: which tokens to mask ({selection.experiment})", headers)
    t.notes.append(f"Avg {target}: {target}-domain average (x100) at the selected checkpoint; Δ in points vs random masking.")
    if roles["random_matched"]:
        t.notes.append("Random masking is the paper's row, at its own γ_max (at EntroDrop's γ_max it masks about 1/k times "
                       "as many tokens, k = EntroDrop's gated share); the rate-matched row's γ_max was set before training "
                       "so that its expected masked fraction (gated share measured at prepare × γ_max × the curriculum's "
                       "mean, baselines/masking.py) equals that of the method named.")
    if roles["online_loss"] or roles["online_entropy"]:
        t.notes.append(ONLINE_NOTE)
    t.notes.append(MASKED_NOTE)
    rand = roles["random"] and selection.runs[roles["random"][1]].aggregate
    compared = _row_comparisons(selection, t.name)
    for role, title, scope in TABLE3_ROWS:
        if role in OPTIONAL_TABLE3_ROWS and roles[role] is None:
            continue  # an optional row: only where a rate-matched or an online-gate method is configured
        method, run = roles[role] or (role, None)
        agg = selection.runs[run].aggregate if run else None
        s = agg.domain_avg.get(target) if agg else None
        base = rand.domain_avg.get(target) if rand else None
        delta = None if role == "random" or not s or not base else s.mean - base.mean  # unrounded
        diff = compared.get(run, {}).get(target)
        if role == "random_matched" and run:
            scope = _matched_scope(selection, run)
        elif role.startswith("online_") and run:
            scope = _online_scope(selection, run, scope)
        row = [title, scope, fmt_cell(s, 2) + ("" if not s else _mark(diff)), DASH if delta is None else f"{delta:+.2f}"]
        if s and s.ci95:
            row[2] += f" [{s.ci95[0]:.2f}, {s.ci95[1]:.2f}]"
        ref = paper["rows"].get(role) if paper else None
        paper_diff = None
        if paper:
            paper_diff = None if not s or not ref else round(r2(s.mean) - ref["avg"], 2) + 0.0
            row += [fmt_num(ref and ref["avg"], 2), DASH if not ref or ref["delta"] is None else f"{ref['delta']:+.2f}",
                    DASH if paper_diff is None else f"{paper_diff:+.2f}"]
        t.records.append(_record(t.name, method, title, run, f"{target} Avg", s, delta_points=delta,
                                 paper=ref and ref["avg"], diff_vs_paper=paper_diff, **_comparison_fields(diff)))
        row.append(_masked_cell(t, method, title, run, selection))
        t.rows.append(row)
    if roles["low_entropy"] is None:
        t.notes.append("low-entropy row: no main `entrodrop` method in this config.")
    t.notes.append(f"Avg {target} [95% interval]: {SCORE_INTERVAL}.")
    t.notes += _contrast_notes(t, selection)
    t.notes += _comparison_notes(selection, t.name, [(target, f"Avg {target}")])
    t.notes += _notes(selection, {r for _, r in filter(None, roles.values())})
    return t


CONTRAST_LABELS = {"low vs rate-matched random": "Low-entropy (EntroDrop) − rate-matched random masking",
                   "low vs random": "Low-entropy (EntroDrop) − random masking (no rate-matched row)",
                   "low vs high entropy": "Low-entropy (EntroDrop) − high-entropy masking"}


def _contrast_notes(t: Table, selection: Selection) -> list[str]:
    """Table 3's own question, one line (and CSV record) per contrast: difference, interval, p, Holm, MDE."""
    found = selection.comparisons.tables.get(t.name)
    lines = []
    for c in found.contrasts if found else []:
        lab = CONTRAST_LABELS.get(c.name, c.name)
        t.records.append(_record(t.name, c.method, lab, c.run, f"{c.column} Avg contrast", None,
                                 **_comparison_fields(c.difference)))
        d = c.difference
        if d is None:
            lines.append(f"{lab}: no test (a result lacks per-item outcomes).")
            continue
        where = "over seeds and items" if d.level == SEEDS_AND_ITEMS else "item-level only, one seed"
        lines.append(f"{lab}, {c.column} Avg: {d.difference:+.2f} points [{d.ci95[0]:+.2f}, {d.ci95[1]:+.2f}], "
                     f"p {fmt_p(d.p)}, Holm over the {len(found.contrasts)} contrasts p {fmt_p(d.p_holm)}"
                     f"{_mark(d)} ({where}; MDE {d.mde:.1f}).")
    return lines


def _matched_scope(selection: Selection, run: str) -> str:
    """`all tokens, γ_max 0.052 (rate of entrodrop)`: the rate-matched run's drop rate as resolved before training
    (the resolved param its plugin declares as `trained_drop_rate`, recorded in its status; the mean over seeds), or
    only what it matches before it has trained."""
    info = selection.runs[run]
    target, key = info.role.rate_matched_to, info.report.trained_drop_rate
    resolved = [rec.resolved[key] for rec in info.seeds.values()
                if key is not None and isinstance((rec.resolved or {}).get(key), (int, float))]
    gamma = f"γ_max {statistics.fmean(resolved):.3g} " if resolved else ""
    return f"all tokens, {gamma}(rate of {target})"


def _online_scope(selection: Selection, run: str, default: str) -> str:
    """`bottom 50%, refreshed in training` when the run declares its gate's share (`ReportFields.gate_share`, the
    default included), else `default`."""
    k = selection.runs[run].report.gate_share
    return f"bottom {100 * k:g}%, refreshed in training" if isinstance(k, (int, float)) else default


# --------------------------------------------------------------------------- Table 4: gamma_max sensitivity
def gamma_table(config: ExperimentConfig, selection: Selection) -> Table | None:
    if not has_gamma_table(selection):
        return None
    target = selection.target_domain
    paper = _paper_block(config, 4)
    headers = ["γ_max", f"Avg {target}", "Best epoch", "Min val loss", "Δ min val loss"] + (["Paper avg", "Paper best epoch", "Paper min val loss"] if paper else [])
    headers.append(MASKED)
    t = Table("table4", f"Table 4: sensitivity to γ_max ({selection.experiment})", headers)
    t.notes.append("Best epoch: target-domain epoch at the minimum held-out validation loss ('>E': still falling at the last "
                   "evaluation, epoch E; with several seeds the range across seeds). γ_max = 0 is the Baseline.")
    t.notes.append(MASKED_NOTE)
    ref_rows = {r["drop_rate"]: r for r in (paper or {}).get("rows", [])}
    compared = _row_comparisons(selection, t.name)
    val_compared = _val_loss_comparisons(selection)
    runs = set()
    for g, method, run in gamma_runs(selection):
        runs.add(run)
        agg = selection.runs[run].aggregate
        s = agg.domain_avg.get(target) if agg else None
        vm = agg.val_min if agg else None
        epoch = vm and vm.target_epoch
        epochs = _best_epochs(selection, run)
        name = "Baseline (γ = 0)" if g == 0 else f"γ_max = {g:g}"
        loss = vm and vm.loss
        diff = compared.get(run, {}).get(target)
        val_diff = val_compared.get(run)
        row = [name, fmt_cell(s, 2) + ("" if not s else _mark(diff)), _epoch_text(epochs), _val_loss_text(vm),
               DASH if val_diff is None else _val_diff_text(val_diff)]
        ref = ref_rows.get(g)
        if paper:
            row += [fmt_num(ref and ref["avg"], 2), (ref or {}).get("best_epoch", DASH), DASH if not ref else f"{ref['min_val_loss']:.3f}"]
        row.append(_masked_cell(t, method, name, run, selection))
        t.rows.append(row)
        t.records.append(_record(t.name, method, name, run, f"{target} Avg", s, paper=ref and ref["avg"],
                                 **_comparison_fields(diff)))
        t.records.append(_record(t.name, method, name, run, "best epoch", epoch, paper=ref and ref["best_epoch"],
                                 range_low=min(e for e, _ in epochs) if epochs else None,
                                 range_high=max(e for e, _ in epochs) if epochs else None))
        t.records.append(_record(t.name, method, name, run, "min val loss", loss, paper=ref and ref["min_val_loss"],
                                 ci_over=_ci_over(vm)))
        if g != 0:
            t.records.append(_record(t.name, method, name, run, "min val loss vs Baseline", None,
                                     ci_over=val_diff and "validation documents", **_comparison_fields(val_diff)))
    t.notes += _val_loss_notes(selection, runs, val_compared)
    t.notes += _comparison_notes(selection, t.name, [(target, f"Avg {target}")], list(val_compared.values()))
    t.notes += _notes(selection, runs)
    return t


def _val_loss_comparisons(selection: Selection) -> dict[str, PairedDifference]:
    """Run -> its minimum validation loss minus the Baseline's (report.val_loss), for Table 4's rows that have one."""
    found = selection.comparisons.tables.get("table4")
    return {r.run: r.val_loss for r in found.rows if r.val_loss} if found else {}


def _best_epochs(selection: Selection, run: str) -> list[tuple[float, bool]]:
    """(target epoch of the minimum validation loss, whether it is the curve's last point) of each seed of the
    run's aggregate that has one."""
    agg = selection.runs[run].aggregate
    seeds = selection.runs[run].seeds
    mins = [seeds[str(s)].val_min if str(s) in seeds else None for s in (agg.seeds if agg else [])]
    return [(m.target_epoch, m.at_end) for m in mins if m and m.target_epoch is not None]


def _epoch_text(epochs: list[tuple[float, bool]]) -> str:
    """One seed: its epoch ('>E' when the loss was still falling); several: the range across seeds, `lo-hi`."""
    if not epochs:
        return DASH
    lo, hi = min(epochs), max(epochs)

    def one(e: tuple[float, bool]) -> str:
        return (">" if e[1] else "") + f"{e[0]:.1f}"

    return one(lo) if lo == hi else f"{one(lo)}-{one(hi)}"


def _ci_over(vm: AggregateValMinimum | None) -> str | None:
    """What the minimum validation loss's CSV ci95 resamples."""
    if not vm or not vm.loss.ci95:
        return None
    return "validation documents" if vm.documents else "seeds"


def _val_loss_text(vm: AggregateValMinimum | None) -> str:
    """`loss [lo, hi]` (the interval over validation documents), `mean ± std` with several seeds."""
    if not vm:
        return DASH
    loss = vm.loss
    text = f"{loss.mean:.3f}" + (f" ± {loss.std:.3f}" if loss.n > 1 else "")
    if vm.documents and loss.ci95:
        text += f" [{loss.ci95[0]:.3f}, {loss.ci95[1]:.3f}]"
    return text


def _val_diff_text(diff: PairedDifference) -> str:
    return f"{diff.difference:+.3f} [{diff.ci95[0]:+.3f}, {diff.ci95[1]:+.3f}]" + _mark(diff)


def _val_min(selection: Selection, run: str) -> AggregateValMinimum | None:
    agg = selection.runs[run].aggregate
    return agg.val_min if agg else None


def _val_loss_notes(selection: Selection, runs: set[str], val_compared: dict[str, PairedDifference]) -> list[str]:
    """How the validation-loss intervals were computed, or why a row has none."""
    notes = []
    with_docs = [r for r in sorted(runs) if _val_min(selection, r) and _val_min(selection, r).documents]
    if with_docs:
        n = selection.runs[with_docs[0]].aggregate.val_min.documents
        notes.append(f"Min val loss [95% CI] and Δ min val loss (minus the Baseline's; marks as below): "
                     f"{VAL_LOSS_TEST}; {n} validation documents. The CSV carries the intervals, p and p_holm.")
        if len(selection.seeds) == 1:
            notes.append("One training seed: these intervals cover which validation documents were drawn, not how "
                         "another training seed would differ, so a small significant Δ may not repeat across seeds "
                         "(several train.seeds resample seeds too).")
    lacking = [r for r in sorted(runs) if _val_min(selection, r) and not _val_min(selection, r).documents]
    if lacking:
        notes.append(f"no interval over validation documents for {', '.join(lacking)}: a validation curve without "
                     "per-document losses (val_curve.json format 1, written before they were kept; training again "
                     "writes them)")
    return notes


# --------------------------------------------------------------------------- rendering
def to_markdown(t: Table) -> str:
    lines = [f"## {t.title}", "", "| " + " | ".join(t.headers) + " |", "|" + "|".join(["---"] * len(t.headers)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    if t.notes:
        lines += [""] + [f"- {n}" for n in t.notes]
    text = "\n".join(lines) + "\n"
    for sub in t.extra:
        text += "\n" + to_markdown(sub)
    return text


_LATEX = [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"),
          ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("γ", r"$\gamma$"), (">", r"$>$"),
          ("–", "--"), ("−", "-"), (MARK, r"$^\dagger$"), (ITEM_MARK, r"$^\ddagger$")]


def latex_escape(text: str) -> str:
    out = []
    for ch in text:
        out.append(next((rep for src, rep in _LATEX if src == ch), ch))
    return "".join(out)


def to_latex(t: Table) -> str:
    cols = "l" + "r" * (len(t.headers) - 1)
    lines = [f"% {latex_escape(t.title)}", r"\begin{tabular}{" + cols + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in t.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {latex_escape(n)}" for n in t.notes]
    text = "\n".join(lines) + "\n"
    for sub in t.extra:
        text += "\n" + to_latex(sub)
    return text


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(t.records)
    return buf.getvalue()


def build_tables(config: ExperimentConfig, selection: Selection) -> list[Table]:
    """Every table this config has methods for (Table 1 or 2, then 3 and 4 when configured)."""
    tables = [main_table(config, selection)]
    tables += [t for t in (targeting_table(config, selection), gamma_table(config, selection)) if t is not None]
    return tables


def write_tables(config: ExperimentConfig, layout: Layout, selection: Selection | None = None) -> list[Path]:
    """Write `<table>.md`, `.tex` and `.csv` for each table from selection.json (refused when missing or stale), or
    from `selection` (one rebuilt from the per-item file, `tables --from-items`)."""
    selection = selection or read_selection(config, layout)
    paths = []
    for t in build_tables(config, selection):
        for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
            path = layout.table_file(t.name, suffix)
            write_text(path, render(t))
            paths.append(path)
    return paths
