"""report.statistics: the seeds x items test (calibration, power, domain averages), Holm, held-out selection.

Calibration tests simulate thousands of studies at once (vectorized), so the whole file runs in seconds; the
tolerances are binomial (three standard errors).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from entrodrop_bench.report.statistics import (
    ITEMS_ONLY,
    SEEDS_AND_ITEMS,
    crossed_arrays,
    crossed_difference,
    crossed_mean,
    crossfit_select,
    heldout_select,
    holm,
    selection_optimism,
    split_items,
    split_masks,
)

# --------------------------------------------------------------------------- calibration (seeds x items)
# One simulated study: 100 items with difficulty uniform in [0.2, 0.8] (a new draw per study); each (method, seed)
# lands `spread` points (sd) away from its method's mean, the same shift on every item (seed-to-seed variation);
# items are solved with that probability. Method a gets `effect` points more. 2,000 studies per setting, all
# vectorized, so the whole calibration takes a few seconds. Binomial tolerance: the nominal 5% allows
# 5% + 3 sd = 6.5% (sd 0.49% at 2,000), coverage >= 95% - 3 sd = 93.5%.
STUDIES = 2000
ITEMS = 100
TOLERANCE = 3 * np.sqrt(0.05 * 0.95 / STUDIES)


def _simulated_differences(rng: np.random.Generator, seeds: int, spread: float, effect: float,
                           studies: int = STUDIES) -> np.ndarray:
    """[studies, seeds, items] per-item differences (x100) of method a minus method b."""
    difficulty = rng.uniform(0.2, 0.8, size=(studies, 1, ITEMS))
    shift_a, shift_b = (rng.normal(0.0, spread / 100, size=(studies, seeds, 1)) for _ in range(2))
    a = rng.random((studies, seeds, ITEMS)) < np.clip(difficulty + shift_a + effect / 100, 0, 1)
    b = rng.random((studies, seeds, ITEMS)) < np.clip(difficulty + shift_b, 0, 1)
    return 100.0 * (a.astype(float) - b)


def _rates(seeds: int, spread: float, effect: float, seed: int, studies: int = STUDIES) -> tuple[float, float, float]:
    """(share of studies with p < 0.05, share whose 95% interval covers the planted effect, median MDE)."""
    out = crossed_arrays([_simulated_differences(np.random.default_rng(seed), seeds, spread, effect, studies)])
    covered = (out["ci_low"] <= effect) & (effect <= out["ci_high"])
    return float((out["p"] < 0.05).mean()), float(covered.mean()), float(np.median(out["mde"]))


@pytest.mark.parametrize("spread", [0, 5, 10])
def test_three_seeds_hold_the_false_positive_rate_and_coverage_at_any_seed_spread(spread):
    rejections, coverage, _ = _rates(3, spread, 0.0, seed=spread)
    assert rejections <= 0.05 + TOLERANCE, rejections
    assert coverage >= 0.95 - TOLERANCE, coverage


@pytest.mark.parametrize(("spread", "effect", "least"), [(0, 10, 0.12), (5, 10, 0.07), (0, 5, 0.02)])
def test_three_seeds_detect_a_planted_effect_and_cover_it(spread, effect, least):
    # Measured (2,000 studies): +10 points detected 20% / 12% / 8% of the time at spreads 0 / 5 / 10, +5 points
    # 3.5-4.5%; with 5 seeds +10 at spread 0: 54%. What 3 seeds and 100 items can show is large effects only.
    power, coverage, _ = _rates(3, spread, effect, seed=100 + spread + effect)
    no_effect, _, _ = _rates(3, spread, 0.0, seed=200 + spread + effect)
    assert power >= least and power > no_effect, (power, no_effect)
    assert coverage >= 0.95 - TOLERANCE, coverage


def test_one_seed_is_calibrated_for_two_checkpoints_not_for_two_methods():
    # Without seed spread (two fixed checkpoints) the item-level test holds its level; with spread it is not a
    # test of the methods, which is why one-seed marks are labelled item-level.
    same_checkpoint, _, _ = _rates(1, 0, 0.0, seed=1)
    assert abs(same_checkpoint - 0.05) <= TOLERANCE, same_checkpoint
    methods, coverage, _ = _rates(1, 10, 0.0, seed=2)
    assert methods > 0.25 and coverage < 0.75, (methods, coverage)


def test_holm_over_five_methods_keeps_the_family_wise_error_with_seed_spread():
    rng = np.random.default_rng(11)
    difficulty = rng.uniform(0.2, 0.8, size=(STUDIES, 1, 1, ITEMS))
    shifts = rng.normal(0.0, 0.05, size=(STUDIES, 6, 3, 1))  # baseline + 5 methods, 3 seeds, 5 points of spread
    solved = (rng.random((STUDIES, 6, 3, ITEMS)) < np.clip(difficulty + shifts, 0, 1)).astype(float)
    p = crossed_arrays([100.0 * (solved[:, 1:] - solved[:, :1])])["p"]  # [studies, 5 methods]
    family = np.mean([(holm(row) < 0.05).any() for row in p])
    assert family <= 0.05 + TOLERANCE, family


def test_per_seed_differences_of_17_20_and_2_points_are_not_significant():
    # The study's Token Dropout general retention: +13.0 points from per-seed differences +17 / +20 / +2 on 100
    # items. The bootstrap over 3 seeds gave p 0.013; a seed-level t-test gives about 0.15, and so does this test.
    rng = np.random.default_rng(0)
    b = (rng.random((3, 100)) < 0.55).astype(float)
    a = b.copy()
    for s, d in enumerate((17, 20, 2)):
        wrong, right = rng.permutation(np.flatnonzero(a[s] == 0)), rng.permutation(np.flatnonzero(b[s] == 1))
        a[s, wrong[:d + 10]], a[s, right[:10]] = 1.0, 0.0  # d more items gained than lost
    assert list(100 * (a - b).mean(axis=1)) == pytest.approx([17.0, 20.0, 2.0])
    res = crossed_difference([100 * a], [100 * b])
    assert res.estimate == pytest.approx(13.0) and 0.1 < res.p_value < 0.25 and res.ci_low < 0 < res.ci_high


def test_interval_test_and_mde_agree_and_widen_with_seed_spread():
    rng = np.random.default_rng(5)
    noise = rng.binomial(1, 0.5, size=(3, 80)).astype(float)
    close = crossed_difference([noise + 0.1 + 0.01 * rng.normal(size=(3, 80))], [noise])
    apart = crossed_difference([noise + np.array([[-0.3], [0.5], [0.1]])], [noise])
    assert close.ci_low > 0 and close.p_value < 0.05 and close.level == SEEDS_AND_ITEMS
    assert apart.estimate == pytest.approx(0.1)
    assert apart.ci_low < 0 < apart.ci_high and apart.p_value > 0.05
    assert apart.mde > 5 * close.mde
    # The p-value is the interval inverted: at alpha = p the interval touches zero.
    level = crossed_difference([noise + np.array([[-0.3], [0.5], [0.1]])], [noise], confidence=1 - apart.p_value)
    assert min(abs(level.ci_low), abs(level.ci_high)) == pytest.approx(0.0, abs=1e-6)


def test_one_seed_is_items_only_and_ties_give_p_one():
    rng = np.random.default_rng(4)
    a, b = rng.binomial(1, 0.5, size=60).astype(float), rng.binomial(1, 0.5, size=60).astype(float)
    one = crossed_difference([a], [b])
    assert one == crossed_difference([a[None]], [b[None]]) and one.level == ITEMS_ONLY and one.n_seeds == 1
    assert one.ci_high - one.ci_low > 0
    tied = crossed_difference([b], [b])
    assert (tied.estimate, tied.ci_low, tied.ci_high, tied.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_domain_average_weighs_benchmarks_as_given_and_adds_their_item_noise():
    rng = np.random.default_rng(7)
    diffs = [rng.normal(0.0, 1.0, size=(1, 400)), rng.normal(0.0, 1.0, size=(1, 400))]
    one = crossed_mean(diffs[:1])
    both = crossed_mean(diffs)
    assert both.estimate == pytest.approx((diffs[0].mean() + diffs[1].mean()) / 2)  # equal weights, not by items
    assert 1.25 < one.se / both.se < 1.6  # mean of two independent benchmark means: ~sqrt(2) narrower
    weighted = crossed_mean([np.ones((1, 10)), np.zeros((1, 10)) + np.arange(10)], weights=[0.75, 0.25])
    assert weighted.estimate == pytest.approx(0.75 + 0.25 * 4.5)


def test_mismatched_or_bad_scores_are_rejected_by_name():
    with pytest.raises(ValueError, match="same seeds and items"):
        crossed_difference([np.zeros(5)], [np.zeros(6)])
    with pytest.raises(ValueError, match="finite"):
        crossed_mean([np.array([0.0, np.nan])])
    with pytest.raises(ValueError, match="confidence"):
        crossed_mean([np.zeros(3)], confidence=95)
    with pytest.raises(ValueError, match="same seeds"):
        crossed_mean([np.zeros((2, 5)), np.zeros((3, 5))])
    with pytest.raises(ValueError, match="positive weight"):
        crossed_mean([np.zeros(5)], weights=[0.0])


# --------------------------------------------------------------------------- Holm
def test_holm_hand_example():
    # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.02, 0.03, 0.06, 0.06.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert list(adjusted <= 0.05) == [True, False, False, True]


def test_holm_caps_at_one_and_keeps_a_single_value():
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(holm([0.02]), [0.02])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


# --------------------------------------------------------------------------- held-out selection
def test_split_is_balanced_seeded_and_stable_across_processes():
    ids = [f"item-{i}" for i in range(101)]
    mask = split_items(ids, seed=0)
    assert mask.sum() == 50
    assert (split_items(ids, seed=0) == mask).all()
    assert (split_items(ids, seed=1) != mask).any()
    # A fresh interpreter with another hash salt gives the same split (hashlib, not hash()).
    code = ("from entrodrop_bench.report.statistics import split_items;"
            "print(''.join('1' if m else '0' for m in split_items([f'item-{i}' for i in range(101)], 0)))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345"}).stdout.strip()
    assert other == "".join("1" if m else "0" for m in mask)
    with pytest.raises(ValueError, match="unique"):
        split_items(["a", "a", "b"], seed=0)


def test_heldout_picks_on_selection_and_reports_on_the_other_half():
    ids = [str(i) for i in range(10)]
    select = split_items(ids, seed=3)
    scores = np.zeros((3, 10))
    scores[1, select] = 1.0  # checkpoint 1 is best on the selection half only
    scores[2, ~select] = 1.0  # checkpoint 2 is best on the report half only
    res = heldout_select(scores, ids, seed=3)
    assert (res.checkpoint, res.selection_score, res.report_score) == (1, 1.0, 0.0)
    # Cross-fitted over many splits, the optimism no longer rests on split 3's particular halves.
    assert 0.0 < selection_optimism(scores, ids, seed=3) < 0.5
    with pytest.raises(ValueError, match="item ids"):
        heldout_select(scores, ids[:9], seed=3)


def test_heldout_is_unbiased_on_noise_where_best_on_all_items_is_not():
    rng = np.random.default_rng(8)
    ids = [f"q{i}" for i in range(100)]
    reported, best_all, optimism = [], [], []
    for r in range(200):
        scores = rng.binomial(1, 0.5, size=(20, 100)).astype(float)  # no checkpoint is truly better
        reported.append(heldout_select(scores, ids, seed=r).report_score)
        best_all.append(scores.mean(axis=1).max())
        optimism.append(selection_optimism(scores, ids, seed=r))
    # True mean 0.5; the mean of 200 report-half means has sd ~0.005.
    assert abs(np.mean(reported) - 0.5) < 0.02
    # Max of 20 means with sd 0.05 sits ~1.9 sd above the truth.
    assert np.mean(best_all) > 0.56
    # Cross-fitted, the optimism estimates the same bias as one split's, with less noise.
    assert np.mean(optimism) == pytest.approx(np.mean(best_all) - np.mean(reported), abs=0.01)


def test_crossfit_optimism_does_not_depend_on_one_split():
    rng = np.random.default_rng(12)
    ids = [f"q{i}" for i in range(100)]
    scores = rng.binomial(1, 0.5, size=(20, 100)).astype(float)
    one_split = [scores.mean(axis=1).max() - heldout_select(scores, ids, seed=s).report_score for s in range(20)]
    crossfit = [selection_optimism(scores, ids, seed=100 * s) for s in range(5)]
    assert np.std(crossfit) < np.std(one_split) / 3, (np.std(crossfit), np.std(one_split))


def test_crossfit_scores_both_directions_and_weights_benchmarks():
    ids = [str(i) for i in range(10)]
    masks = split_masks(ids, seed=3, n_splits=1)
    select = masks[0]
    scores = np.zeros((3, 10))
    scores[1, select] = 1.0  # best on the first half only: picked there, scores 0 on the other
    scores[2, ~select] = 1.0  # best on the second half only: picked there (reverse direction), scores 0
    fit = crossfit_select([scores], [masks])
    assert (fit.paper, fit.heldout, fit.optimism, fit.splits) == (0.5, 0.0, 0.5, 1)
    double = crossfit_select([scores, np.ones((3, 4))], [masks, split_masks("abcd", 0, 1)], weights=[0.5, 0.5])
    assert double.paper == pytest.approx(0.75) and double.heldout == pytest.approx(0.5)


if __name__ == "__main__":
    # The calibration table of docs/statistics.md: 10,000 simulated studies per cell, 100 items.
    print("| seeds | seed spread | no effect: p < 0.05 / coverage | +5 points | +10 points | median MDE |")
    print("|---|---|---|---|---|---|")
    for n_seeds in (1, 3, 5):
        for spread in (0, 5, 10):
            cells, mde = [], 0.0
            for effect in (0, 5, 10):
                rate, cover, m = _rates(n_seeds, spread, effect, seed=1000 * n_seeds + 10 * spread + effect, studies=10_000)
                cells.append(f"{100 * rate:.1f}% / {100 * cover:.1f}%")
                mde = m if effect == 0 else mde
            print(f"| {n_seeds} | {spread} | " + " | ".join(cells) + f" | {mde:.1f} |")
