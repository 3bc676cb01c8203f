"""Paired comparisons against the Baseline, and item-level intervals, from per-item outcomes in the store.

`select` calls these and writes the results into selection.json (artifacts.Comparisons); the tables and the
leaderboard only render them.

- Each table row (a method's run) is compared with the Baseline's selected run on every domain average and
  the total average: the difference (points, x100) with a 95% paired-bootstrap interval and a p-value
  (report.statistics.domain_bootstrap). Both runs are paired item by item (items matched by id) and seed by
  seed (training seed k of the method with seed k of the Baseline): with several seeds the bootstrap
  resamples seeds, then items. Holm's correction runs, per column, across the rows of one table.
- A domain average is the mean of its benchmarks' means and the total the mean of the domain averages, as
  in the tables, so the total weighs each benchmark by 1 / (domains x benchmarks of its domain).
- A result without per-item outcomes leaves the cells that need it empty and is listed, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from entrodrop_bench.artifacts import (
    Comparisons,
    EvalResult,
    LeaderboardComparison,
    PairedDifference,
    RowComparison,
    TableComparisons,
)
from entrodrop_bench.errors import DataError
from entrodrop_bench.report.rows import SelectionRows, baseline_method, table_rows
from entrodrop_bench.report.statistics import BootstrapResult, domain_bootstrap, holm

RESAMPLES = 10_000
SEED = 0
ALPHA = 0.05
TOTAL = "total"
TEST = ("paired bootstrap over items (seeds, then items, with several seeds), 95% percentile interval and "
        "two-sided p-value of the method's average minus the Baseline's, x100; Holm's correction across the rows "
        "of one table, per column")

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


def run_items(store: dict, run: str, steps: dict[int, int], benchmarks: Sequence[str]) -> tuple[RunItems, list[str]]:
    """Per-item outcomes of a run's selected checkpoints (seed -> step), and the labels of results lacking them."""
    found: RunItems = {}
    lacking = []
    for seed, step in sorted(steps.items()):
        results = store.get((run, seed, step), {})
        for bench in benchmarks:
            label = result_label(run, seed, step, bench)
            items = item_scores(results.get(bench), label)
            if items is None:
                lacking.append(label)
            else:
                found.setdefault(seed, {})[bench] = items
    return found, lacking


def _weights(domains: dict[str, list[str]], column: str) -> dict[str, float]:
    """Benchmark -> its weight in a domain average (or, for `total`, in the mean of the domain averages)."""
    if column == TOTAL:
        return {b: 1.0 / (len(domains) * len(bs)) for bs in domains.values() for b in bs}
    return {b: 1.0 / len(domains[column]) for b in domains[column]}


def _bootstrap(a: list[np.ndarray], b: list[np.ndarray], weights: list[float]) -> BootstrapResult:
    """Paired bootstrap of sum_k w_k (mean a_k - mean b_k), through `domain_bootstrap` (which averages benchmarks
    with equal weights): scaling benchmark k by K w_k turns that equal-weight mean into the weighted sum."""
    k = len(weights)
    return domain_bootstrap([x * (k * w) for x, w in zip(a, weights)], [y * (k * w) for y, w in zip(b, weights)],
                            seed=SEED, n_resamples=RESAMPLES)


def _paired_arrays(a: RunItems, b: RunItems, seeds: list[int], bench: str) -> tuple[np.ndarray, np.ndarray] | None:
    """[seeds, items] x100 of both runs on one benchmark, on the item ids every (run, seed) has; None when either
    lacks the benchmark's items on some seed, or no item id is shared."""
    tables = [items.get(s, {}).get(bench) for items in (a, b) for s in seeds]
    if any(t is None for t in tables):
        return None
    common = sorted(set.intersection(*(set(t) for t in tables)))
    if not common:
        return None
    arrays = [np.array([[100.0 * items[s][bench][i] for i in common] for s in seeds]) for items in (a, b)]
    return arrays[0], arrays[1]


def compare(a: RunItems, b: RunItems, domains: dict[str, list[str]]) -> dict[str, BootstrapResult | None]:
    """Column (each domain, then `total`) -> the paired bootstrap of run a minus run b on their common seeds."""
    seeds = sorted(set(a) & set(b))
    out: dict[str, BootstrapResult | None] = {}
    for column in [*domains, TOTAL]:
        weights = _weights(domains, column)
        pairs = [_paired_arrays(a, b, seeds, bench) for bench in weights] if seeds else []
        if not pairs or any(p is None for p in pairs):
            out[column] = None
        else:
            out[column] = _bootstrap([p[0] for p in pairs], [p[1] for p in pairs], list(weights.values()))
    return out


def mean_interval(items: dict[str, dict[str, float]], domains: dict[str, list[str]], column: str,
                  reported: float) -> list[float] | None:
    """95% item-bootstrap interval of one seed's score in `column` (a benchmark, a domain or `total`), centred on
    the `reported` value (x100); None when a benchmark it needs has no per-item outcomes."""
    weights = {column: 1.0} if column not in domains and column != TOTAL else _weights(domains, column)
    if any(b not in items for b in weights):
        return None
    a = [100.0 * np.array(list(items[b].values())) for b in weights]
    # Against an all-zero reference the paired difference is the score itself.
    res = _bootstrap(a, [np.zeros_like(x) for x in a], list(weights.values()))
    shift = reported - res.difference  # the harness's aggregate may differ slightly from the item mean
    return [res.ci_low + shift, res.ci_high + shift]


def _difference(res: BootstrapResult, p_holm: float) -> PairedDifference:
    return PairedDifference(difference=res.difference, ci95=[res.ci_low, res.ci_high], p=res.p_value, p_holm=p_holm)


def comparisons(selection: dict, domains: dict[str, list[str]], store: dict) -> Comparisons:
    """Every table's rows against the Baseline (see the module docstring). `selection` is the selection being
    computed, as a dict with `methods`, `runs` and `target_domain`."""
    rows_of = SelectionRows.of(selection["methods"], selection["runs"], selection["target_domain"])
    base_method = baseline_method(rows_of)
    base_run = selection["methods"][base_method]["best_run"] if base_method else None
    if base_run is None:
        why = "no method with the `baseline` table role" if base_method is None else f"the Baseline ({base_method}) has no selected checkpoint"
        return Comparisons(test=TEST, resamples=RESAMPLES, seed=SEED, baseline=base_method, baseline_run=None,
                           tables={}, lacking_items=[], notes=[f"no paired comparisons: {why}"])
    benchmarks = [b for bs in domains.values() for b in bs]
    cache: dict[str, tuple[RunItems, list[str]]] = {}

    def items_of(run: str) -> tuple[RunItems, list[str]]:
        if run not in cache:
            steps = {int(s): r["selected"]["step"] for s, r in selection["runs"][run]["seeds"].items() if r and r["selected"]}
            cache[run] = run_items(store, run, steps, benchmarks)
        return cache[run]

    base_items, _ = items_of(base_run)
    raw: dict[str, dict[str, BootstrapResult | None]] = {}
    tables: dict[str, TableComparisons] = {}
    for table, rows in table_rows(rows_of).items():
        rows = [(m, r) for m, r in rows if r != base_run and selection["runs"][r]["aggregate"]]
        for _, run in rows:
            if run not in raw:
                raw[run] = compare(items_of(run)[0], base_items, domains)
        adjusted: dict[tuple[str, str], float] = {}
        for column in [*domains, TOTAL]:
            tested = [run for _, run in rows if raw[run][column] is not None]
            for run, p in zip(tested, holm([raw[run][column].p_value for run in tested])):
                adjusted[(run, column)] = float(p)
        tables[table] = TableComparisons(rows=[
            RowComparison(method=method, run=run,
                          seeds=sorted(set(items_of(run)[0]) & set(base_items)),
                          columns={c: None if raw[run][c] is None else _difference(raw[run][c], adjusted[(run, c)])
                                   for c in [*domains, TOTAL]})
            for method, run in rows])
    compared = {base_run, *raw}
    lacking = sorted({label for run in compared for label in items_of(run)[1]})
    notes = []
    if lacking:
        notes.append(f"{len(lacking)} selected result(s) lack per-item outcomes, so the paired comparisons that need "
                     f"them are absent: {', '.join(lacking[:10])}{' and more (see lacking_items)' if len(lacking) > 10 else ''}; "
                     f"`entrodrop-bench eval CONFIG` with eval.per_item: true re-evaluates them with per-item outcomes")
    return Comparisons(test=TEST, resamples=RESAMPLES, seed=SEED, baseline=base_method, baseline_run=base_run,
                       tables=tables, lacking_items=lacking, notes=notes)


def significant(diff: PairedDifference | LeaderboardComparison | None) -> bool:
    """A comparison (a selection's, or as a leaderboard entry carries it) whose Holm-adjusted p-value is below
    0.05."""
    return diff is not None and diff.p_holm < ALPHA
