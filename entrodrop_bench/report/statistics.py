"""Statistics that separate a method's effect from noise: seed-and-item tests, Holm, held-out selection.

Pure functions on numpy arrays (no file I/O), so the tables can call them on whatever the store holds.

- Seeds x items (`crossed_mean`, `crossed_difference`, `crossed_moments`): a score, or two methods' paired
  difference, averaged over training seeds and test items (a domain or total average: a weighted sum of
  benchmark means). The standard error adds a seed term (each seed's own value: the seed-level t-test) and
  item terms (the spread over the same test items), both holding the residual noise, so it errs wide; the
  interval and p-value are Student t with Welch-Satterthwaite degrees of freedom. This stays valid with 3
  seeds however far seeds land apart, where a bootstrap over 3 seeds (which sees at most 3 values) rejects
  a true null 8-15% of the time at the 5% level. The calibration (false positives, coverage, power at seed
  spreads 0-10 points) is tests/test_statistics.py. One seed: item terms only, which compares two
  checkpoints, not two methods (`level` says which). `minimum_detectable_effect` gives the difference
  detected with 80% power at a comparison's standard error.
- Token-weighted means over documents (`weighted_crossed`): a validation loss is a mean over tokens, so
  documents weigh by their token counts; a method's loss or the paired difference of two, seeds x documents
  as above (the ratio linearized).
- Holm's step-down correction (`holm`) across the methods of one table.
- Held-out checkpoint selection (`split_items`, `heldout_select`, `crossfit_select`, `selection_optimism`):
  the paper's rule picks the checkpoint with the best test score and reports that same score, which is
  biased upward. Each benchmark's items are split by a seeded hash of the item id into a selection half
  (picks the checkpoint) and a report half (scores it); the optimism is cross-fitted: both directions of
  many splits, averaged, so it does not depend on which items one split drew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class HeldoutResult:
    """The checkpoint picked on the selection half of the items and its score on the report half."""

    checkpoint: int
    """Index (into the checkpoint axis) of the picked checkpoint; ties go to the earliest."""
    selection_score: float
    """Its mean on the selection half (what picked it; optimistic)."""
    report_score: float
    """Its mean on the report half (unbiased for that checkpoint)."""


# --------------------------------------------------------------------------- input checks
def _as_scores(x: object, name: str) -> np.ndarray:
    """Scores as a float array [seeds, items]; a 1-D input is one seed."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name}: expected scores shaped [items] or [seeds, items] with at least one of each, "
                         f"got shape {np.shape(x)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: scores must be finite (found NaN or inf)")
    return arr


def _paired(a: object, b: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Both methods' scores as [seeds, items], after checking that they cover the same seeds and items."""
    a_arr, b_arr = _as_scores(a, f"{name} (method a)"), _as_scores(b, f"{name} (method b)")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"{name}: the two methods must be scored on the same seeds and items; "
                         f"got shapes {a_arr.shape} and {b_arr.shape}")
    return a_arr, b_arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level strictly between 0 and 1, got {confidence}")


# --------------------------------------------------------------------------- seeds x items (crossed) inference
SEEDS_AND_ITEMS = "seeds and items"
ITEMS_ONLY = "items only"
MDE_POWER = 0.8


@dataclass(frozen=True)
class CrossedResult:
    """A mean (a score, or a paired difference of two methods) with its standard error, interval and test."""

    estimate: float
    """Point estimate: sum_k w_k mean over seeds and items of benchmark k."""
    se: float
    """Standard error: the seed term plus the item terms (see `crossed_terms`)."""
    ci_low: float
    ci_high: float
    p_value: float
    """Two-sided test of "the mean is 0" (for a paired difference: no difference), the interval inverted."""
    mde: float
    """Minimum detectable effect: the true difference this test detects at level 0.05 with 80% power."""
    n_seeds: int
    level: str
    """`seeds and items` (several seeds: a statement about the methods) or `items only` (one seed: about two
    checkpoints; another training seed may differ by more)."""


def _blocks(blocks: Sequence[object], weights: Sequence[float] | None, name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Blocks as float arrays [..., seeds, items_k] sharing the leading and seed axes, and weights (default 1/K)."""
    arrs = [np.asarray(b, dtype=float) for b in blocks]
    if not arrs:
        raise ValueError(f"{name}: expected at least one benchmark")
    arrs = [a[None, :] if a.ndim == 1 else a for a in arrs]
    lead = {a.shape[:-1] for a in arrs}
    if len(lead) != 1 or any(a.shape[-1] < 2 for a in arrs):
        raise ValueError(f"{name}: every benchmark must be shaped [seeds, items] with the same seeds and at least 2 "
                         f"items, got shapes {[a.shape for a in arrs]}")
    if not all(np.isfinite(a).all() for a in arrs):
        raise ValueError(f"{name}: scores must be finite (found NaN or inf)")
    w = np.full(len(arrs), 1.0 / len(arrs)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(arrs),) or not np.isfinite(w).all() or (w <= 0).any():
        raise ValueError(f"{name}: expected one positive weight per benchmark ({len(arrs)}), got {np.asarray(weights).tolist()}")
    return arrs, w


def crossed_terms(blocks: Sequence[object], weights: Sequence[float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, variance terms [..., J], their degrees of freedom [J]) of T = sum_k w_k mean(X_k), each X_k shaped
    [..., seeds, items_k] (vectorized over the leading axes, so a calibration can pass thousands of studies).

    Seeds and items are crossed (every seed is scored on the same items), so T has a seed component, an item
    component and residual noise. Its variance is estimated as the sum of

    - the seed term var_s(t_s) / S with t_s = sum_k w_k mean_i X_k[s, i], each seed's own value (S - 1 df): it
      holds the seed-to-seed spread and the item noise within a seed; alone it is the seed-level t-test;
    - an item term per benchmark, w_k^2 var_i(m_ki) / I_k with m_ki = mean_s X_k[s, i] (I_k - 1 df): the spread
      over the test items, which the seed term misses where a method is better on some items in every seed.

    Both hold the residual, so the sum errs wide. One seed has item terms only.
    """
    arrs, w = _blocks(blocks, weights, "crossed_terms")
    n_seeds = arrs[0].shape[-2]
    per_seed = sum(wk * a.mean(axis=-1) for wk, a in zip(w, arrs))  # [..., seeds]
    terms, dfs = [], []
    if n_seeds > 1:
        terms.append(per_seed.var(axis=-1, ddof=1) / n_seeds)
        dfs.append(n_seeds - 1)
    for wk, a in zip(w, arrs):
        terms.append(wk**2 * a.mean(axis=-2).var(axis=-1, ddof=1) / a.shape[-1])
        dfs.append(a.shape[-1] - 1)
    return per_seed.mean(axis=-1), np.stack(terms, axis=-1), np.asarray(dfs, dtype=float)


def half_width(terms: np.ndarray, dfs: np.ndarray, quantile: object) -> np.ndarray:
    """sqrt(sum_j t_{q, df_j}^2 v_j): each variance term scaled by its own t quantile (Banerjee's interval).

    With 3 seeds the seed term has 2 degrees of freedom; a single pooled t (Welch-Satterthwaite) then lets the
    estimated degrees of freedom rise exactly when the seed spread is underestimated, and rejected a true null
    6.6% of the time at 10 points of seed spread. Scaling each term by its own quantile is conservative for any
    ratio of the terms."""
    q = np.asarray(quantile, dtype=float)
    t = stats.t.ppf(q[..., None], dfs)
    return np.sqrt((t**2 * terms).sum(axis=-1))


def _p_values(estimate: np.ndarray, terms: np.ndarray, dfs: np.ndarray) -> np.ndarray:
    """Smallest alpha whose (1 - alpha) interval excludes 0, by bisection on log alpha (vectorized)."""
    lo, hi = np.full(estimate.shape, -30.0), np.zeros(estimate.shape)  # log alpha in [-30, 0]
    target = np.abs(estimate)
    for _ in range(45):
        mid = (lo + hi) / 2
        excludes = half_width(terms, dfs, 1 - np.exp(mid) / 2) < target
        hi, lo = np.where(excludes, mid, hi), np.where(excludes, lo, mid)
    return np.where(target > 0, np.exp(hi), 1.0)


def crossed_arrays(blocks: Sequence[object], weights: Sequence[float] | None = None, *, confidence: float = 0.95,
                   power: float = MDE_POWER) -> dict[str, np.ndarray]:
    """`crossed_mean` vectorized over leading axes: estimate, se, ci_low, ci_high, p and mde as arrays."""
    estimate, terms, dfs = crossed_terms(blocks, weights)
    h = half_width(terms, dfs, 0.5 + confidence / 2)
    return {"estimate": estimate, "se": np.sqrt(terms.sum(axis=-1)), "ci_low": estimate - h, "ci_high": estimate + h,
            "p": _p_values(estimate, terms, dfs), "mde": h + half_width(terms, dfs, power)}


def crossed_mean(blocks: Sequence[object], weights: Sequence[float] | None = None, *,
                 confidence: float = 0.95) -> CrossedResult:
    """Interval and test for sum_k w_k mean(X_k) over seeds and items (`crossed_terms`); `blocks[k]` is benchmark
    k shaped [items] (one seed) or [seeds, items], every benchmark with the same seeds. The MDE is at level
    1 - `confidence` with 80% power."""
    _check_confidence(confidence)
    out = crossed_arrays(blocks, weights, confidence=confidence)
    n_seeds = np.asarray(blocks[0]).shape[0] if np.ndim(blocks[0]) == 2 else 1
    return CrossedResult(*(float(out[k]) for k in ("estimate", "se", "ci_low", "ci_high", "p", "mde")),
                         n_seeds=n_seeds, level=SEEDS_AND_ITEMS if n_seeds > 1 else ITEMS_ONLY)


def crossed_difference(a: Sequence[object], b: Sequence[object], weights: Sequence[float] | None = None, *,
                       confidence: float = 0.95) -> CrossedResult:
    """Paired difference sum_k w_k (mean a_k - mean b_k): `a[k]`, `b[k]` are two methods' scores on benchmark k,
    [items] or [seeds, items], row s of both from training seed s and columns the same items. The per-item
    differences go through `crossed_mean`, so the difficulty an item has for both methods cancels."""
    if len(a) != len(b) or not a:
        raise ValueError(f"crossed_difference: expected the same positive number of benchmarks for both methods, "
                         f"got {len(a)} and {len(b)}")
    diffs = [np.subtract(*_paired(x, y, f"crossed_difference benchmark {k}")) for k, (x, y) in enumerate(zip(a, b))]
    return crossed_mean(diffs, weights, confidence=confidence)


# --------------------------------------------------------------------------- token-weighted means (validation loss)
def _weighted_inputs(a: object, b: object | None, weights: object) -> tuple[np.ndarray, np.ndarray]:
    """(a - b, or a alone, as [seeds, docs]; weights as [docs]) after checking shapes and values."""
    x = _as_scores(a, "weighted_crossed (a)")
    if b is not None:
        x, y = _paired(a, b, "weighted_crossed")
        x = x - y
    w = np.asarray(weights, dtype=float)
    if w.shape != (x.shape[1],):
        raise ValueError(f"weighted_crossed: expected one weight per document ({x.shape[1]}), got shape {w.shape}")
    if not np.isfinite(w).all() or w.min() <= 0:
        raise ValueError("weighted_crossed: weights (tokens per document) must be finite and positive")
    return x, w


def weighted_crossed(a: object, weights: object, b: object | None = None, *, confidence: float = 0.95) -> CrossedResult:
    """Seeds x documents interval and test of a token-weighted mean (a validation loss), or of a paired difference.

    `a` (and `b`) are per-document mean losses shaped [docs] or [seeds, docs], documents in the same order
    (paired by document, row s of both from training seed s); `weights` are the documents' token counts, so each
    seed's statistic T_s = sum_d w_d x_sd / sum_d w_d is the run-level loss, and the mean over seeds. With `b`
    it is that of a - b. The ratio is linearized: z_sd = T_s + w_d (x_sd - T_s) / mean(w) averages to T_s over
    documents and its spread over documents is the ratio's, so `crossed_mean` of z gives the seed term (the
    spread of the T_s) and the document term, valid at 3 seeds like the scores' intervals.
    """
    x, w = _weighted_inputs(a, b, weights)
    per_seed = (x * w).sum(axis=1) / w.sum()
    z = per_seed[:, None] + w * (x - per_seed[:, None]) / w.mean()
    return crossed_mean([z], confidence=confidence)


# --------------------------------------------------------------------------- multiple comparisons
def holm(p_values: object) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as the input); reject where adjusted <= alpha.

    The i-th smallest of m p-values is multiplied by (m - i + 1), capped at 1, and made non-decreasing
    in that order, so the family-wise error rate stays at alpha without assuming independence.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"holm: expected a 1-D list of p-values, got shape {p.shape}")
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order])) if m else p
    adjusted = np.empty_like(p)
    adjusted[order] = stepped
    return adjusted


# --------------------------------------------------------------------------- held-out selection
def _item_hash(item_id: str, seed: int) -> bytes:
    # hashlib, not hash(): Python salts str hashes per process, and the split must never move.
    return hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()


def split_items(item_ids: Sequence[object], seed: int) -> np.ndarray:
    """Boolean mask over `item_ids`: True for the selection half, False for the report half.

    Items are ranked by a seeded SHA-256 of their id and the first half (floor(n/2)) selects, so the
    halves are balanced and the split depends only on the ids and the seed.
    """
    ids = [str(i) for i in item_ids]
    if len(ids) < 2:
        raise ValueError(f"split_items: need at least 2 item ids to split into halves, got {len(ids)}")
    if len(set(ids)) != len(ids):
        raise ValueError("split_items: item ids must be unique (a repeated id would land in both halves' count)")
    order = sorted(range(len(ids)), key=lambda i: _item_hash(ids[i], seed))
    mask = np.zeros(len(ids), dtype=bool)
    mask[order[: len(ids) // 2]] = True
    return mask


def _checkpoint_scores(scores: object, item_ids: Sequence[object]) -> np.ndarray:
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"scores: expected [checkpoints, items] with at least one checkpoint, got shape {arr.shape}")
    if arr.shape[1] != len(item_ids):
        raise ValueError(f"scores: {arr.shape[1]} items per checkpoint but {len(item_ids)} item ids")
    if not np.isfinite(arr).all():
        raise ValueError("scores: must be finite (found NaN or inf)")
    return arr


def heldout_select(scores: object, item_ids: Sequence[object], seed: int) -> HeldoutResult:
    """Pick the checkpoint by its mean on the selection half; report its mean on the report half.

    `scores` is [checkpoints, items] on one benchmark, columns in the order of `item_ids`.
    """
    arr = _checkpoint_scores(scores, item_ids)
    select = split_items(item_ids, seed)
    on_selection = arr[:, select].mean(axis=1)
    best = int(np.argmax(on_selection))  # first maximum: ties go to the earliest checkpoint
    return HeldoutResult(best, float(on_selection[best]), float(arr[best, ~select].mean()))


CROSSFIT_SPLITS = 50


@dataclass(frozen=True)
class CrossFit:
    """The paper's rule against held-out selection, cross-fitted over many item splits (averages)."""

    paper: float
    """Best checkpoint's weighted mean on every item (the paper's rule: picked and reported on the same items)."""
    heldout: float
    """Mean over splits and both directions of the report-half score of the checkpoint picked on the other half."""
    splits: int

    @property
    def optimism(self) -> float:
        return self.paper - self.heldout


def split_masks(item_ids: Sequence[object], seed: int, n_splits: int) -> np.ndarray:
    """[n_splits, items] boolean selection halves, split j by `split_items` with seed `seed + j`."""
    return np.stack([split_items(item_ids, seed + j) for j in range(n_splits)])


def crossfit_select(scores: Sequence[object], masks: Sequence[np.ndarray], weights: Sequence[float] | None = None
                    ) -> CrossFit:
    """Cross-fitted held-out selection on a weighted average of benchmarks: for every split and both directions,
    the checkpoint with the best average on one half (ties: the earliest) is scored on the other half.

    `scores[k]` is benchmark k shaped [checkpoints, items_k], `masks[k]` its [splits, items_k] selection halves
    (`split_masks`). One fixed split makes the held-out score (and so the optimism) depend on which items it
    drew; averaging over both halves of many splits removes that, leaving the selection effect.
    """
    arrs = [_checkpoint_scores(x, range(np.shape(x)[1])) for x in scores]
    if len({a.shape[0] for a in arrs}) != 1 or len(masks) != len(arrs):
        raise ValueError(f"crossfit_select: every benchmark needs the same checkpoints and one mask array each, got "
                         f"shapes {[a.shape for a in arrs]} and {len(masks)} mask arrays")
    w = np.full(len(arrs), 1.0 / len(arrs)) if weights is None else np.asarray(weights, dtype=float)
    m = [np.asarray(x, dtype=float) for x in masks]
    if any(mk.ndim != 2 or mk.shape[1] != a.shape[1] or mk.shape[0] != m[0].shape[0] for mk, a in zip(m, arrs)):
        raise ValueError("crossfit_select: each benchmark's masks must be [splits, items] with the same splits")

    def half_means(half: list[np.ndarray]) -> np.ndarray:  # [splits, checkpoints]
        return sum(wk * (h @ a.T) / h.sum(axis=1, keepdims=True) for wk, h, a in zip(w, half, arrs))

    paper = float(sum(wk * a.mean(axis=1) for wk, a in zip(w, arrs)).max())
    first, second = half_means(m), half_means([1.0 - mk for mk in m])
    rows = np.arange(first.shape[0])
    report = np.concatenate([second[rows, first.argmax(axis=1)], first[rows, second.argmax(axis=1)]])
    return CrossFit(paper, float(report.mean()), int(first.shape[0]))


def selection_optimism(scores: object, item_ids: Sequence[object], seed: int, n_splits: int = CROSSFIT_SPLITS) -> float:
    """How much the paper's rule overstates one benchmark: best-on-all-items mean minus the cross-fitted held-out
    score (`crossfit_select` over `n_splits` splits seeded from `seed`)."""
    arr = _checkpoint_scores(scores, item_ids)
    return crossfit_select([arr], [split_masks(item_ids, seed, n_splits)]).optimism
