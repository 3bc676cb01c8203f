"""Table 4's validation-loss statistics: intervals over validation documents, from the per-document losses in
each run's validation curve (artifacts.ValCurve, format 2).

`select` calls these and writes the numbers into selection.json; the tables only render them.

- A run's minimum validation loss (per seed the lowest `overall` point of its curve, the one
  `selection.val_minimum` picks) gets a 95% interval over seeds and validation documents at that point
  (`statistics.weighted_crossed`): documents weigh by their label tokens, so the statistic is the run-level
  loss (a token-weighted mean), and with several seeds the mean over seeds of their minima; the standard
  error adds the seed term and the document term, valid at 3 seeds. The checkpoint of each minimum is held fixed: the interval is for the
  loss there, not for the choice of epoch (the tables show that choice as a range across seeds).
- Each Table 4 row's minimum validation loss minus the Baseline's, paired by document id (and training seed k
  with seed k), with a two-sided p-value and Holm's correction across Table 4's rows.
- A curve without per-document losses (format 1, written before they were kept) gives no interval over
  documents and no paired difference; the tables say so instead of showing one.
"""

from __future__ import annotations

import numpy as np

from entrodrop_bench.artifacts import Comparisons, PairedDifference, ValCurve
from entrodrop_bench.paths import Layout
from entrodrop_bench.report.statistics import CrossedResult, holm, weighted_crossed

TABLE = "table4"
TEST = ("over seeds and validation documents (seed term + document term, each with its own t quantile), each "
        "document weighted by its label tokens as in the run-level loss, at each seed's minimum-loss checkpoint; "
        "differences paired by document id and seed, Holm's correction across the rows of Table 4")

# doc id -> (label tokens, mean loss) at one point of one (run, seed)'s curve
DocLosses = dict[int, tuple[int, float]]


def losses_at(curve: ValCurve | None, step: int) -> DocLosses | None:
    """Each validation document's tokens and loss at `step` of a curve; None without per-document losses there."""
    if curve is None or curve.doc_ids is None or curve.doc_tokens is None:
        return None
    point = next((p for p in curve.points if p.step == step), None)
    if point is None or point.doc_losses is None:
        return None
    return {d: (t, x) for d, t, x in zip(curve.doc_ids, curve.doc_tokens, point.doc_losses)}


def paired_arrays(runs: list[dict[int, DocLosses]], seeds: list[int]) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Each run's losses as [seeds, docs] on the document ids every (run, seed) has, and their token counts;
    None when no id is shared or a document's token count differs (different validation sets)."""
    tables = [r[s] for r in runs for s in seeds]
    if not tables:
        return None
    common = sorted(set.intersection(*(set(t) for t in tables)))
    if not common or any(t[d][0] != tables[0][d][0] for t in tables for d in common):
        return None
    weights = np.array([tables[0][d][0] for d in common], dtype=float)
    return [np.array([[r[s][d][1] for d in common] for s in seeds]) for r in runs], weights


def _minimum_losses(layout: Layout, run: str, record: dict) -> dict[int, DocLosses] | None:
    """Seed -> per-document losses at its minimum, for the seeds of the run's aggregate minimum; None unless
    every one of them has them."""
    seeds = [s for s in record["aggregate"]["seeds"] if (record["seeds"][str(s)] or {}).get("val_min")]
    found = {s: losses_at(ValCurve.read_or_none(ValCurve.path(layout, run, s)), record["seeds"][str(s)]["val_min"]["step"])
             for s in seeds}
    return found if found and all(v is not None for v in found.values()) else None


def add_intervals(layout: Layout, runs: dict[str, dict]) -> dict[str, dict[int, DocLosses]]:
    """Give every run's aggregate minimum validation loss its interval over documents, in place (`ci95`, and
    `documents`: how many were resampled; None when a seed's curve has no per-document losses, leaving the
    interval across seeds with several seeds and none with one). Returns run -> seed -> per-document losses at
    the minimum, for `add_comparisons`."""
    found = {}
    for run, record in runs.items():
        vm = (record.get("aggregate") or {}).get("val_min")
        if not vm:
            continue
        vm["documents"] = None
        losses = _minimum_losses(layout, run, record)
        arrays = losses and paired_arrays([losses], sorted(losses))
        if not arrays:
            continue
        found[run] = losses
        (x,), weights = arrays
        res = weighted_crossed(x, weights)
        vm["loss"]["ci95"] = [res.ci_low, res.ci_high]
        vm["loss"]["ci_over"] = "seeds and documents" if x.shape[0] > 1 else "documents only"
        vm["documents"] = int(x.shape[1])
    return found


def difference(a: dict[int, DocLosses], b: dict[int, DocLosses]) -> CrossedResult | None:
    """Minimum validation loss of run a minus run b, paired by document and seed; None without a common seed or
    document."""
    seeds = sorted(set(a) & set(b))
    arrays = paired_arrays([a, b], seeds) if seeds else None
    if arrays is None:
        return None
    (x, y), weights = arrays
    return weighted_crossed(x, weights, y)


def add_comparisons(compared: Comparisons, found: dict[str, dict[int, DocLosses]]) -> None:
    """Set `val_loss` of each Table 4 row of `compared` (its run's minimum validation loss minus the Baseline's),
    Holm-adjusted across the rows that have one."""
    table = compared.tables.get(TABLE)
    base = found.get(compared.baseline_run or "")
    if table is None or base is None:
        return
    raw = {row.run: (difference(found[row.run], base) if row.run in found else None) for row in table.rows}
    tested = [run for run, res in raw.items() if res is not None]
    adjusted = dict(zip(tested, holm([raw[run].p_value for run in tested])))
    for row in table.rows:
        res = raw[row.run]
        if res is not None:
            row.val_loss = PairedDifference(difference=res.estimate, ci95=[res.ci_low, res.ci_high], p=res.p_value,
                                            p_holm=float(adjusted[row.run]), se=res.se, mde=res.mde, level=res.level)
