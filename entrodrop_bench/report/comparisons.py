"""Paired comparisons, score intervals and cross-fitted optimism, from per-item outcomes.

`select` calls these and writes the results into selection.json (artifacts.Comparisons, the aggregates'
intervals, the held-out view); the tables and the leaderboard only render them. Everything here reads an
`Items` mapping, (run, seed, step) -> benchmark -> item id -> score: `store_items` builds it from the results
store, `report.item_outcomes` from the committed per-item file, so both give the same numbers.

- Each table row (a method's run) is compared with the Baseline's selected run on every domain average and
  the total average: the difference (points, x100) with a 95% interval, a two-sided p-value and the minimum
  detectable effect, from `statistics.crossed_difference` (seeds x items: a seed term and item terms, valid at
  3 seeds). Both runs are paired item by item (items matched by id) and seed by seed (training seed k of the
  method with seed k of the Baseline). Holm's correction runs, per column, across the rows of one table.
  With one seed the comparison is of two checkpoints (`level: items only`), and the tables say so.
- Table 3 also answers its own question: EntroDrop (low entropy) against rate-matched random masking (the
  paper's random row when none is configured) and against high-entropy masking, on the target domain, with
  Holm across those contrasts.
- A domain average is the mean of its benchmarks' means and the total the mean of the domain averages, as
  in the tables, so the total weighs each benchmark by 1 / (domains x benchmarks of its domain).
- A result without per-item outcomes leaves the cells that need it empty and is listed, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from entrodrop_bench.artifacts import (
    Comparisons,
    Contrast,
    EvalResult,
    LeaderboardComparison,
    PairedDifference,
    RowComparison,
    RunSelection,
    TableComparisons,
)
from entrodrop_bench.errors import DataError
from entrodrop_bench.report.rows import SelectionRows, baseline_method, role_runs, table_rows
from entrodrop_bench.report.statistics import (
    MDE_POWER,
    SEEDS_AND_ITEMS,
    CrossedResult,
    crossed_difference,
    crossed_mean,
    holm,
)

ALPHA = 0.05
TOTAL = "total"
TEST = ("paired over items (matched by id) and training seeds (seed k with seed k); standard error = seed term "
        "(spread of the per-seed differences, the seed-level t-test) + item terms (spread over the test items), "
        "each scaled by its own Student t quantile (Banerjee), which errs wide; 95% interval, two-sided p-value "
        "(the interval inverted) of the method's average minus the Baseline's, x100; Holm's correction across the "
        "rows of one table, per column")
SCORE_INTERVAL = ("95% interval of the mean over seeds and items (seed term + item terms, each with its own t "
                  "quantile); with one seed over items only; without per-item outcomes a t interval over seeds")
CONTRASTS = (("low vs rate-matched random", "low_entropy", "random_matched"),
             ("low vs high entropy", "low_entropy", "high_entropy"))
"""Table 3's own question: (name, role a, role b) of each contrast (a minus b); without a rate-matched random
row, the first is against the paper's random row (`low vs random`)."""

# (run, seed, step) -> benchmark -> item id -> score (0-1, as stored)
Items = dict[tuple[str, int, int], dict[str, dict[str, float]]]
# seed -> benchmark -> item id -> score, for one run's selected checkpoints
RunItems = dict[int, dict[str, dict[str, float]]]


def result_label(run: str, seed: int, step: int, benchmark: str) -> str:
    return f"{run}/seed{seed}/checkpoint-{step}/{benchmark}"


def item_scores(result: object, label: str) -> dict[str, float] | None:
    """Item id -> score of one stored result; None when it has no per-item outcomes (or no result at all)."""
    if not isinstance(result, EvalResult) or result.items is None:
        return None
    ids, scores = result.items.ids, result.items.scores
    if len(ids) != len(scores) or len(set(ids)) != len(ids) or not ids:
        raise DataError(f"{label}: per-item outcomes must hold as many unique item ids as scores, and at least one; "
                        f"got {len(set(ids))} unique ids of {len(ids)} and {len(scores)} scores. Re-run "
                        f"`entrodrop-bench eval CONFIG` to rewrite the result")
    return dict(zip(ids, map(float, scores)))


def store_items(store: dict) -> Items:
    """The per-item outcomes of every stored result that has them (a malformed one is refused, naming it)."""
    out: Items = {}
    for (run, seed, step), results in store.items():
        for bench, rec in results.items():
            found = item_scores(rec, result_label(run, seed, step, bench))
            if found is not None:
                out.setdefault((run, seed, step), {})[bench] = found
    return out


def run_items(items: Items, run: str, steps: dict[int, int], benchmarks: Sequence[str]) -> tuple[RunItems, list[str]]:
    """Per-item outcomes of a run's selected checkpoints (seed -> step), and the labels of results lacking them."""
    found: RunItems = {}
    lacking = []
    for seed, step in sorted(steps.items()):
        results = items.get((run, seed, step), {})
        for bench in benchmarks:
            if bench in results:
                found.setdefault(seed, {})[bench] = results[bench]
            else:
                lacking.append(result_label(run, seed, step, bench))
    return found, lacking


def weights(domains: dict[str, list[str]], column: str) -> dict[str, float]:
    """Benchmark -> its weight in a column: a benchmark alone (1), a domain average, or `total` (the mean of the
    domain averages)."""
    if column == TOTAL:
        return {b: 1.0 / (len(domains) * len(bs)) for bs in domains.values() for b in bs}
    if column not in domains:
        return {column: 1.0}
    return {b: 1.0 / len(domains[column]) for b in domains[column]}


def _arrays(runs: Sequence[RunItems], seeds: list[int], bench: str) -> list[np.ndarray] | None:
    """[seeds, items] x100 of each run on one benchmark, on the item ids every (run, seed) has; None when a run
    lacks the benchmark's items on some seed, or fewer than 2 item ids are shared."""
    tables = [items.get(s, {}).get(bench) for items in runs for s in seeds]
    if not seeds or any(t is None for t in tables):
        return None
    common = sorted(set.intersection(*(set(t) for t in tables)))
    if len(common) < 2:
        return None
    return [np.array([[100.0 * items[s][bench][i] for i in common] for s in seeds]) for items in runs]


def compare(a: RunItems, b: RunItems, domains: dict[str, list[str]], columns: Sequence[str] | None = None
            ) -> dict[str, CrossedResult | None]:
    """Column (each domain, then `total`, or `columns`) -> run a minus run b on their common seeds."""
    seeds = sorted(set(a) & set(b))
    out: dict[str, CrossedResult | None] = {}
    for column in columns or [*domains, TOTAL]:
        w = weights(domains, column)
        pairs = [_arrays([a, b], seeds, bench) for bench in w]
        if any(p is None for p in pairs):
            out[column] = None
        else:
            out[column] = crossed_difference([p[0] for p in pairs], [p[1] for p in pairs], list(w.values()))
    return out


def score_interval(items: RunItems, domains: dict[str, list[str]], column: str) -> CrossedResult | None:
    """A run's score in `column` over its seeds' selected checkpoints and their items (x100); None when a benchmark
    it needs lacks per-item outcomes on some seed, or every item scores the same in every seed (all solved or all
    failed: no spread to scale, and a zero-width interval would claim certainty)."""
    w = weights(domains, column)
    blocks = [_arrays([items], sorted(items), bench) for bench in w]
    if any(b is None for b in blocks):
        return None
    res = crossed_mean([b[0] for b in blocks], list(w.values()))
    return res if res.se > 0 else None


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> list[float] | None:
    """t interval of the mean of several seeds' values (no per-item outcomes); None for one value or no spread,
    which would read as a zero-width interval."""
    arr = np.asarray(values, dtype=float)
    if arr.size < 2 or arr.std() == 0:
        return None
    half = stats.t.ppf(0.5 + confidence / 2, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size)
    return [float(arr.mean() - half), float(arr.mean() + half)]


def _difference(res: CrossedResult, p_holm: float) -> PairedDifference:
    return PairedDifference(difference=res.estimate, ci95=[res.ci_low, res.ci_high], p=res.p_value, p_holm=p_holm,
                            se=res.se, mde=res.mde, level=res.level)


def _holm_columns(results: dict[str, dict[str, CrossedResult | None]], columns: list[str]) -> dict[tuple[str, str], float]:
    """(key, column) -> Holm-adjusted p across the keys, per column."""
    adjusted: dict[tuple[str, str], float] = {}
    for column in columns:
        tested = [k for k in results if results[k][column] is not None]
        for k, p in zip(tested, holm([results[k][column].p_value for k in tested])):
            adjusted[(k, column)] = float(p)
    return adjusted


def _contrasts(selection: SelectionRows, domains: dict[str, list[str]], items_of) -> list[Contrast]:
    """Table 3's own contrasts on the target domain (see CONTRASTS), Holm across them."""
    roles = role_runs(selection)
    target = selection.target_domain
    found = []
    for name, role_a, role_b in CONTRASTS:
        if role_b == "random_matched" and roles[role_b] is None:
            name, role_b = "low vs random", "random"
        if roles[role_a] is None or roles[role_b] is None:
            continue
        (method_a, run_a), (method_b, run_b) = roles[role_a], roles[role_b]
        if not selection.runs[run_a].aggregate or not selection.runs[run_b].aggregate:
            continue
        a, b = items_of(run_a)[0], items_of(run_b)[0]
        found.append((name, method_a, run_a, method_b, run_b, sorted(set(a) & set(b)),
                      compare(a, b, domains, [target])[target]))
    tested = [c for c in found if c[-1] is not None]
    adjusted = dict(zip([c[0] for c in tested], holm([c[-1].p_value for c in tested])))
    return [Contrast(name=n, method=ma, run=ra, against=mb, against_run=rb, column=target, seeds=seeds,
                     difference=None if res is None else _difference(res, float(adjusted[n])))
            for n, ma, ra, mb, rb, seeds, res in found]


def comparisons(selection: SelectionRows, domains: dict[str, list[str]], items: Items) -> Comparisons:
    """Every table's rows against the Baseline, and Table 3's contrasts (see the module docstring), of the methods
    and runs of the selection being computed."""
    base_method = baseline_method(selection)
    base_run = selection.methods[base_method].best_run if base_method else None
    common = {"test": TEST, "alpha": ALPHA, "mde_power": MDE_POWER, "baseline": base_method}
    if base_run is None:
        why = "no method with the `baseline` table role" if base_method is None else f"the Baseline ({base_method}) has no selected checkpoint"
        return Comparisons(**common, baseline_run=None, tables={}, lacking_items=[],
                           notes=[f"no paired comparisons: {why}"])
    benchmarks = [b for bs in domains.values() for b in bs]
    columns = [*domains, TOTAL]
    cache: dict[str, tuple[RunItems, list[str]]] = {}

    def items_of(run: str) -> tuple[RunItems, list[str]]:
        if run not in cache:
            cache[run] = run_items(items, run, selected_steps(selection.runs[run]), benchmarks)
        return cache[run]

    base_items, _ = items_of(base_run)
    raw: dict[str, dict[str, CrossedResult | None]] = {}
    tables: dict[str, TableComparisons] = {}
    for table, rows in table_rows(selection).items():
        rows = [(m, r) for m, r in rows if r != base_run and selection.runs[r].aggregate is not None]
        for _, run in rows:
            raw.setdefault(run, compare(items_of(run)[0], base_items, domains))
        adjusted = _holm_columns({run: raw[run] for _, run in rows}, columns)
        tables[table] = TableComparisons(rows=[
            RowComparison(method=method, run=run, seeds=sorted(set(items_of(run)[0]) & set(base_items)),
                          columns={c: None if raw[run][c] is None else _difference(raw[run][c], adjusted[(run, c)])
                                   for c in columns})
            for method, run in rows])
    if "table3" in tables:
        tables["table3"].contrasts = _contrasts(selection, domains, items_of)
    lacking = sorted({label for run in cache for label in items_of(run)[1]})
    notes = []
    if lacking:
        notes.append(f"{len(lacking)} selected result(s) lack per-item outcomes, so the paired comparisons that need "
                     f"them are absent: {', '.join(lacking[:10])}{' and more (see lacking_items)' if len(lacking) > 10 else ''}; "
                     f"`entrodrop-bench eval CONFIG` with eval.per_item: true re-evaluates them with per-item outcomes")
    return Comparisons(**common, baseline_run=base_run, tables=tables, lacking_items=lacking, notes=notes)


def selected_steps(run: RunSelection) -> dict[int, int]:
    """Seed -> the step of its selected checkpoint, for the seeds of a run that have one."""
    return {int(s): r.selected.step for s, r in run.seeds.items() if r.selected is not None}


def significant(diff: PairedDifference | LeaderboardComparison | None) -> bool:
    """A comparison (a selection's, or as a leaderboard entry carries it) whose Holm-adjusted p-value is below
    0.05."""
    return diff is not None and diff.p_holm < ALPHA


def seed_level(diff: PairedDifference | None) -> bool:
    """A comparison over several seeds (about the methods), not one seed's two checkpoints."""
    return diff is not None and diff.level == SEEDS_AND_ITEMS
