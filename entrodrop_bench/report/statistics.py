"""Statistics that separate a method's effect from noise: paired bootstrap, Holm, held-out selection.

Pure functions on numpy arrays (no file I/O), so the tables can call them on whatever the store holds.

- Paired bootstrap over items (`paired_bootstrap`): two methods scored on the same items; the items are
  resampled once per replicate and both methods' means are taken on that same resample, so the item
  difficulty they share cancels. With several training seeds (inputs shaped [seeds, items]) it is
  hierarchical: resample seeds, then items within each resampled seed, so the interval covers the
  seed-to-seed spread as well as the choice of items. The two-stage resampling counts item noise at both
  levels, so it errs wide (measured: ~2.5% false rejections at the 5% level with 3-10 seeds); a table
  that calls a difference significant can rely on it, one that calls two methods equal cannot.
- Domain averages (`domain_bootstrap`): a domain score is the mean of several benchmarks' means; each
  benchmark's items are resampled independently (paired across the two methods) and the benchmark means
  are averaged, so a 40-item benchmark weighs as much as a 1000-item one, as in the tables.
- Token-weighted means over documents (`weighted_bootstrap`): a validation loss is a mean over tokens, so
  documents (the resampled unit) weigh by their token counts; a method's loss or the paired difference of
  two, hierarchical over seeds then documents with several seeds.
- Holm's step-down correction (`holm`) across the methods of one table.
- Held-out checkpoint selection (`split_items`, `heldout_select`, `selection_optimism`): the paper's rule
  picks the checkpoint with the best test score and reports that same score, which is biased upward. Here
  each benchmark's items are split once, by a seeded hash of the item id, into a selection half (picks
  the checkpoint) and a report half (scores it).

p-values are two-sided and read off the bootstrap distribution of the difference (the percentile
interval inverted: the smallest level at which the interval would exclude zero), so `p < 0.05` agrees with
the 95% interval excluding zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 10_000
# Bounds the (resamples x seeds x items) index array of one vectorized chunk (~8 bytes per entry).
_CHUNK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class BootstrapResult:
    """A difference of means (method a minus method b) with its bootstrap interval and p-value."""

    difference: float
    """Point estimate: mean over seeds (and benchmarks) of the per-item mean difference."""
    ci_low: float
    """Lower end of the percentile confidence interval."""
    ci_high: float
    """Upper end of the percentile confidence interval."""
    p_value: float
    """Two-sided bootstrap p-value for "no difference"."""


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


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples: expected a positive number of resamples, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level strictly between 0 and 1, got {confidence}")


# --------------------------------------------------------------------------- paired bootstrap
def _summarize(point: float, distribution: np.ndarray, confidence: float) -> BootstrapResult:
    alpha = 1.0 - confidence
    low, high = np.quantile(distribution, [alpha / 2, 1 - alpha / 2])
    n = distribution.size
    # +1 in numerator and denominator: the observed data count as one replicate, so p is never 0.
    tail = min(np.count_nonzero(distribution <= 0), np.count_nonzero(distribution >= 0))
    p = min(1.0, 2.0 * (tail + 1) / (n + 1))
    return BootstrapResult(float(point), float(low), float(high), float(p))


def _hierarchical_means(diffs: Sequence[np.ndarray], n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of mean_k mean(diffs[k]) with seeds, then items of each benchmark, resampled.

    Every benchmark k is shaped [seeds, items_k] with the same seeds (one training run is evaluated on
    every benchmark), so a replicate draws one set of seeds for all benchmarks, then items within each
    (resampled seed, benchmark) pair independently. A single seed makes the seed draw trivial.
    """
    n_seeds = diffs[0].shape[0]
    widest = max(d.shape[1] for d in diffs)
    chunk = max(1, _CHUNK_ENTRIES // (n_seeds * widest))
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        seeds = rng.integers(n_seeds, size=(r, n_seeds))
        total = np.zeros(r)
        for d in diffs:
            items = rng.integers(d.shape[1], size=(r, n_seeds, d.shape[1]))
            total += d[seeds[:, :, None], items].mean(axis=(1, 2))
        out[start:start + r] = total / len(diffs)
    return out


def paired_bootstrap(a: object, b: object, *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES,
                     confidence: float = 0.95) -> BootstrapResult:
    """Paired bootstrap of mean(a) - mean(b) over items (and seeds, when inputs are [seeds, items]).

    `a` and `b` are per-item scores of two methods on the same items, shaped [items] or [seeds, items]
    (row s of both comes from training seed s). `seed` seeds the resampling's numpy Generator (it is not a
    training seed): the same inputs and `seed` give the same result in any process.
    """
    _check_bootstrap_args(n_resamples, confidence)
    a_arr, b_arr = _paired(a, b, "paired_bootstrap")
    diff = a_arr - b_arr
    rng = np.random.default_rng(seed)
    if diff.shape[0] == 1:
        # One seed: an ordinary paired bootstrap over items, which scipy implements (vectorized);
        # `paired=True` resamples the two methods' scores with the same item indices.
        res = stats.bootstrap(
            (a_arr[0], b_arr[0]), lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis), paired=True,
            vectorized=True, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
            rng=rng,
        )
        return _summarize(diff.mean(), res.bootstrap_distribution, confidence)
    # Several seeds: scipy resamples one level only (observations along one axis); the nested draw
    # (seeds, then items inside each drawn seed) is our own, vectorized over resamples.
    return _summarize(diff.mean(), _hierarchical_means([diff], n_resamples, rng), confidence)


def domain_bootstrap(a: Sequence[object], b: Sequence[object], *, seed: int = 0,
                     n_resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95) -> BootstrapResult:
    """Paired bootstrap of a domain-average difference: the mean over benchmarks of mean(a_k) - mean(b_k).

    `a[k]`, `b[k]` are the two methods' per-item scores on benchmark k, shaped [items_k] or
    [seeds, items_k]; every benchmark must have the same seeds. Items of each benchmark are resampled
    independently, with the same indices for both methods.
    """
    _check_bootstrap_args(n_resamples, confidence)
    if len(a) != len(b) or not a:
        raise ValueError(f"domain_bootstrap: expected the same positive number of benchmarks for both methods, "
                         f"got {len(a)} and {len(b)}")
    diffs = [np.subtract(*_paired(x, y, f"domain_bootstrap benchmark {k}")) for k, (x, y) in enumerate(zip(a, b))]
    seeds = {d.shape[0] for d in diffs}
    if len(seeds) != 1:
        raise ValueError(f"domain_bootstrap: every benchmark must hold the same seeds, got seed counts {sorted(seeds)}")
    point = float(np.mean([d.mean() for d in diffs]))
    return _summarize(point, _hierarchical_means(diffs, n_resamples, np.random.default_rng(seed)), confidence)


# --------------------------------------------------------------------------- token-weighted means (validation loss)
def _weighted_inputs(a: object, b: object | None, weights: object) -> tuple[np.ndarray, np.ndarray]:
    """(a - b, or a alone, as [seeds, docs]; weights as [docs]) after checking shapes and values."""
    x = _as_scores(a, "weighted_bootstrap (a)")
    if b is not None:
        x, y = _paired(a, b, "weighted_bootstrap")
        x = x - y
    w = np.asarray(weights, dtype=float)
    if w.shape != (x.shape[1],):
        raise ValueError(f"weighted_bootstrap: expected one weight per document ({x.shape[1]}), got shape {w.shape}")
    if not np.isfinite(w).all() or w.min() <= 0:
        raise ValueError("weighted_bootstrap: weights (tokens per document) must be finite and positive")
    return x, w


def _hierarchical_weighted(x: np.ndarray, w: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of mean_s (sum_d w_d x[s, d] / sum_d w_d) with seeds, then documents within each
    drawn seed, resampled; the denominator is each resample's own (a ratio estimator, like the loss itself)."""
    n_seeds, n_docs = x.shape
    chunk = max(1, _CHUNK_ENTRIES // (n_seeds * n_docs))
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        seeds = rng.integers(n_seeds, size=(r, n_seeds))
        docs = rng.integers(n_docs, size=(r, n_seeds, n_docs))
        wd = w[docs]
        out[start:start + r] = ((x[seeds[:, :, None], docs] * wd).sum(axis=2) / wd.sum(axis=2)).mean(axis=1)
    return out


def weighted_bootstrap(a: object, weights: object, b: object | None = None, *, seed: int = 0,
                       n_resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95) -> BootstrapResult:
    """Bootstrap over documents of a token-weighted mean (a validation loss), or of a paired difference of two.

    `a` (and `b`) are per-document mean losses shaped [docs] or [seeds, docs], documents in the same order
    (paired by document, and row s of both from training seed s); `weights` are the documents' token counts,
    so that the statistic, per seed sum_d w_d x_d / sum_d w_d, is the run-level loss, and the mean over seeds.
    With `b` it is that of a - b: both methods on the same resampled documents. One seed: scipy's paired
    bootstrap over documents; several: seeds, then documents within each drawn seed. `seed` seeds the
    resampling (not a training seed). The p-value is meaningful for a difference only.
    """
    _check_bootstrap_args(n_resamples, confidence)
    x, w = _weighted_inputs(a, b, weights)
    point = float(((x * w).sum(axis=1) / w.sum()).mean())
    rng = np.random.default_rng(seed)
    if x.shape[0] == 1:
        res = stats.bootstrap(
            (x[0], w), lambda v, u, axis: (v * u).sum(axis=axis) / u.sum(axis=axis), paired=True, vectorized=True,
            n_resamples=n_resamples, confidence_level=confidence, method="percentile", rng=rng,
            batch=max(1, _CHUNK_ENTRIES // x.shape[1]),  # a validation set may hold many thousand documents
        )
        return _summarize(point, res.bootstrap_distribution, confidence)
    return _summarize(point, _hierarchical_weighted(x, w, n_resamples, rng), confidence)


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


def selection_optimism(scores: object, item_ids: Sequence[object], seed: int) -> float:
    """How much the paper's rule overstates: best-on-all-items mean minus the held-out report score."""
    arr = _checkpoint_scores(scores, item_ids)
    return float(arr.mean(axis=1).max() - heldout_select(arr, item_ids, seed).report_score)
