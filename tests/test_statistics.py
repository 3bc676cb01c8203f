"""report.statistics: paired and hierarchical bootstrap, domain averages, Holm, held-out selection.

Calibration tests repeat a seeded experiment a few hundred times on small item counts, so the whole file
runs in a few seconds; the tolerances are binomial (about three standard errors).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from entrodrop_bench.report.statistics import (
    domain_bootstrap,
    heldout_select,
    holm,
    paired_bootstrap,
    selection_optimism,
    split_items,
)


# --------------------------------------------------------------------------- paired bootstrap
def test_planted_effect_is_significant_and_the_interval_covers_it():
    rng = np.random.default_rng(1)
    b = rng.binomial(1, 0.4, size=200).astype(float)
    a = b.copy()
    a[:30], b[:30] = 1.0, 0.0  # a solves 30 known items that b fails, ties elsewhere
    planted = 30 / 200
    res = paired_bootstrap(a, b, seed=0, n_resamples=2000)
    assert res.difference == pytest.approx(planted)
    assert res.ci_low < planted < res.ci_high
    assert res.ci_low > 0
    assert res.p_value < 0.01


def test_no_effect_rejects_about_five_percent():
    rng = np.random.default_rng(2)
    rejections = 0
    repeats = 200
    for r in range(repeats):
        # Same item difficulty for both methods (paired), independent correct/incorrect given it.
        difficulty = rng.uniform(0.1, 0.9, size=60)
        a = rng.binomial(1, difficulty).astype(float)
        b = rng.binomial(1, difficulty).astype(float)
        rejections += paired_bootstrap(a, b, seed=r, n_resamples=999).p_value < 0.05
    # 5% of 200 = 10 (sd ~3): between 1% and 11% allows the bootstrap's slight small-sample liberalness.
    assert 2 <= rejections <= 22, rejections


def test_reproducible_for_a_seed_and_different_across_seeds():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert paired_bootstrap(a, b, seed=7, n_resamples=500) == paired_bootstrap(a, b, seed=7, n_resamples=500)
    assert paired_bootstrap(a, b, seed=7, n_resamples=500) != paired_bootstrap(a, b, seed=8, n_resamples=500)
    many = np.stack([a, a + 0.1])
    base = np.stack([b, b])
    assert paired_bootstrap(many, base, seed=7, n_resamples=500) == paired_bootstrap(many, base, seed=7, n_resamples=500)


def test_single_seed_interval_has_width_unless_all_differences_are_equal():
    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    b = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    res = paired_bootstrap(a, b, seed=0, n_resamples=1000)
    assert res.ci_high - res.ci_low > 0
    same = paired_bootstrap(b + 0.25, b, seed=0, n_resamples=1000)  # every item differs by exactly 0.25
    assert same.ci_low == pytest.approx(0.25) and same.ci_high == pytest.approx(0.25)
    assert same.p_value < 0.01
    tied = paired_bootstrap(b, b, seed=0, n_resamples=1000)
    assert (tied.difference, tied.ci_low, tied.ci_high, tied.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_one_row_of_seeds_matches_the_flat_input():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=40), rng.normal(size=40)
    assert paired_bootstrap(a, b, seed=3, n_resamples=300) == paired_bootstrap(a[None], b[None], seed=3, n_resamples=300)


def test_hierarchical_interval_is_wider_when_seeds_differ():
    rng = np.random.default_rng(5)
    noise = rng.binomial(1, 0.5, size=(4, 80)).astype(float)
    a = noise + np.array([-0.3, 0.3, -0.2, 0.4])[:, None]  # runs of method a differ a lot between seeds
    b = noise  # paired noise: within one seed the item-level spread is small
    one = paired_bootstrap(a[0] + 0.05 * rng.normal(size=80), b[0], seed=0, n_resamples=2000)
    several = paired_bootstrap(a + 0.05 * rng.normal(size=(4, 80)), b, seed=0, n_resamples=2000)
    assert several.ci_high - several.ci_low > 3 * (one.ci_high - one.ci_low)


def test_mismatched_or_bad_scores_are_rejected_by_name():
    with pytest.raises(ValueError, match="same seeds and items"):
        paired_bootstrap(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(np.zeros(3), np.zeros(3), confidence=95)
    with pytest.raises(ValueError, match="same seeds"):
        domain_bootstrap([np.zeros((2, 5)), np.zeros((3, 5))], [np.zeros((2, 5)), np.zeros((3, 5))])


# --------------------------------------------------------------------------- domain averages
def test_domain_average_weighs_benchmarks_equally_and_resamples_each():
    rng = np.random.default_rng(6)
    small_b = rng.binomial(1, 0.5, size=20).astype(float)
    big_b = rng.binomial(1, 0.5, size=400).astype(float)
    small_a, big_a = small_b + 0.2, big_b.copy()  # +0.2 on the small benchmark only
    res = domain_bootstrap([small_a, big_a], [small_b, big_b], seed=0, n_resamples=500)
    assert res.difference == pytest.approx(0.1)  # (0.2 + 0) / 2, not weighted by item count
    assert res.ci_low == pytest.approx(0.1) and res.ci_high == pytest.approx(0.1)  # per-item diffs constant


def test_domain_interval_combines_each_benchmarks_item_noise():
    rng = np.random.default_rng(7)
    diffs = [rng.normal(0.0, 1.0, size=100), rng.normal(0.0, 1.0, size=100)]
    zeros = [np.zeros(100), np.zeros(100)]
    one = paired_bootstrap(diffs[0], zeros[0], seed=0, n_resamples=4000)
    both = domain_bootstrap(diffs, zeros, seed=0, n_resamples=4000)
    # Mean of two independent benchmark means: the standard error shrinks by about sqrt(2).
    ratio = (one.ci_high - one.ci_low) / (both.ci_high - both.ci_low)
    assert 1.2 < ratio < 1.7, ratio


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
    assert selection_optimism(scores, ids, seed=3) == pytest.approx(0.5)
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
    assert np.mean(optimism) == pytest.approx(np.mean(best_all) - np.mean(reported))
