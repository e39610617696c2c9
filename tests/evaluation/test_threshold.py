"""Threshold searches against hand-traced cases."""

import numpy as np
import pytest

from brainuad.evaluation.threshold import (
    exhaustive_threshold_search,
    greedy_threshold_search,
    healthy_fpr_threshold,
    pooled_dice,
    search_threshold,
)


def _two_lesion_volumes(lesion=0.8, healthy=0.2):
    maps, segs = [], []
    for k in range(2):
        a = np.zeros((4, 6, 6), np.float32)
        s = np.zeros(a.shape, bool)
        s[1, 1:3, 1:3] = True
        a[s] = lesion
        a[2, 3:5, 3 + k:5] = healthy
        maps.append(a)
        segs.append(s)
    return maps, segs


def test_pooled_dice_by_hand():
    maps, segs = _two_lesion_volumes()
    # 8 lesion voxels at 0.8, 4 + 2 healthy voxels at 0.2
    assert pooled_dice(maps, segs, 0.5) == 1.0
    assert pooled_dice(maps, segs, 0.1) == pytest.approx(2 * 8 / (14 + 8))
    assert pooled_dice(maps, segs, 0.8) == 0.0  # strict rule: nothing above 0.8


def test_greedy_separable_case_reaches_dice_1():
    maps, segs = _two_lesion_volumes()
    t, d = greedy_threshold_search(maps, segs)
    assert d == 1.0
    assert 0.2 <= t < 0.8  # with map > t, any t in [0.2, 0.8) separates perfectly


def _traced_case():
    """Pooled: 4 lesion voxels at 0.6, 4 healthy at 0.3, 1 healthy at 0.95, zeros elsewhere.

    Dice(t) = 8/13 for t < 0.3, 8/9 for 0.3 <= t < 0.6, 0 for t >= 0.6.
    """
    a1 = np.zeros((3, 4, 4), np.float32)
    s1 = np.zeros(a1.shape, bool)
    s1[0, 0, :2] = True
    a1[s1] = 0.6
    a1[2, 3, 1:4] = 0.3
    a2 = np.zeros((2, 5, 5), np.float32)
    s2 = np.zeros(a2.shape, bool)
    s2[1, 2, 2:4] = True
    a2[s2] = 0.6
    a2[0, 0, 0] = 0.3
    a2[0, 4, 4] = 0.95
    return [a1, a2], [s1, s2]


def test_greedy_hand_traced_steps():
    maps, segs = _traced_case()
    # step 1 on [0, 1]: t=0.25 -> 8/13, t=0.75 -> 0; keep [0, 0.5]
    assert greedy_threshold_search(maps, segs, steps=1, hi=1.0) == (0.25, pytest.approx(8 / 13))
    # step 2 on [0, 0.5]: t=0.125 -> 8/13, t=0.375 -> 8/9; keep [0.25, 0.5]
    assert greedy_threshold_search(maps, segs, steps=2, hi=1.0) == (0.375, pytest.approx(8 / 9))
    # step 3 on [0.25, 0.5]: 0.3125 and 0.4375 both 8/9 (tie -> lower half); best stays 0.375
    assert greedy_threshold_search(maps, segs, steps=3, hi=1.0) == (0.375, pytest.approx(8 / 9))
    assert greedy_threshold_search(maps, segs, hi=1.0) == (0.375, pytest.approx(8 / 9))
    # hi=None starts from the maximum 0.95: [0, .95] -> lower half; [0, .475]: 0.11875 vs 0.35625
    t, d = greedy_threshold_search(maps, segs, steps=2)
    assert t == pytest.approx(0.35625) and d == pytest.approx(8 / 9)


def test_greedy_tie_keeps_lower_half():
    # lesion: 2 voxels at 0.9, 2 at 0.2; healthy: 2 at 0.8, 1 at 0.05
    a = np.zeros((2, 4, 4), np.float32)
    s = np.zeros(a.shape, bool)
    a[0, 0, :2], s[0, 0, :2] = 0.9, True
    a[0, 1, :2], s[0, 1, :2] = 0.2, True
    a[1, 0, :2] = 0.8
    a[1, 1, 0] = 0.05
    # step 1 on [0, 1]: Dice(0.25) = Dice(0.75) = 4/8 -> tie, keep [0, 0.5]
    # step 2 on [0, 0.5]: Dice(0.125) = 8/10, Dice(0.375) = 4/8 -> best 0.125
    # (keeping the upper half instead would reach only Dice(0.875) = 4/6)
    assert greedy_threshold_search([a], [s], steps=1, hi=1.0) == (0.25, 0.5)
    assert greedy_threshold_search([a], [s], steps=2, hi=1.0) == (0.125, pytest.approx(0.8))
    assert greedy_threshold_search([a], [s], hi=1.0) == (0.125, pytest.approx(0.8))


def test_greedy_can_miss_what_exhaustive_finds():
    maps, segs = _traced_case()
    t, d = exhaustive_threshold_search(maps, segs)
    assert d == pytest.approx(8 / 9) and 0.3 <= t < 0.6
    assert pooled_dice(maps, segs, t) == pytest.approx(d)


def test_exhaustive_matches_brute_force():
    rng = np.random.default_rng(0)
    maps = [np.round(rng.random((3, 5, 5)), 2) for _ in range(2)]
    segs = [m + 0.4 * rng.random(m.shape) > 0.9 for m in maps]
    t, d = exhaustive_threshold_search(maps, segs)
    candidates = np.unique(np.concatenate([m.ravel() for m in maps]))
    brute = max(pooled_dice(maps, segs, c) for c in candidates)
    assert d == pytest.approx(brute)
    assert pooled_dice(maps, segs, t) == pytest.approx(d)


def test_exhaustive_all_voxels_best():
    a = np.array([[[0.5, 0.5], [0.5, 0.9]]])
    s = np.array([[[1, 1], [1, 0]]], bool)
    t, d = exhaustive_threshold_search([a], [s])  # {>0.5} is just the healthy voxel
    assert t < 0.5 and d == pytest.approx(2 * 3 / (4 + 3))


def test_greedy_close_to_exhaustive_on_unimodal_case():
    rng = np.random.default_rng(1)
    maps, segs = [], []
    for _ in range(3):
        s = np.zeros((8, 16, 16), bool)
        s[2:6, 4:10, 5:11] = True
        a = np.where(s, rng.normal(0.6, 0.12, s.shape), rng.normal(0.25, 0.1, s.shape)).clip(0, None)
        maps.append(a.astype(np.float32))
        segs.append(s)
    tg, dg = greedy_threshold_search(maps, segs)
    te, de = exhaustive_threshold_search(maps, segs)
    assert de >= dg
    assert de - dg < 0.005
    assert abs(tg - te) < 0.02


def test_cc_in_search():
    a = np.zeros((10, 10, 10), np.float32)
    s = np.zeros(a.shape, bool)
    s[2:4, 2:4, 2:4] = True  # 8 lesion voxels
    a[s] = 0.5
    for p in [(7, 7, 7), (7, 2, 7), (2, 7, 7), (7, 7, 2), (5, 8, 1)]:
        a[p] = 0.9  # isolated hot voxels
    t0, d0 = search_threshold([a], [s], "greedy", min_component=7)  # ignored without cc_in_search
    assert d0 == pytest.approx(16 / 21)
    t1, d1 = search_threshold([a], [s], "greedy", cc_in_search=True)
    assert d1 == 1.0 and t1 < 0.5
    assert greedy_threshold_search([a], [s], min_component=7)[1] == 1.0


def test_healthy_fpr_gives_requested_rate():
    rng = np.random.default_rng(2)
    maps, masks = [], []
    for _ in range(4):
        m = np.zeros((8, 16, 16), bool)
        m[1:7, 2:14, 3:13] = True
        a = rng.gamma(2.0, 0.1, m.shape).astype(np.float32)
        a[~m] = 10.0  # outside the brain: must be ignored
        maps.append(a)
        masks.append(m)
    n = sum(int(m.sum()) for m in masks)
    t, achieved = search_threshold(maps, masks, "healthy_fpr", fpr=0.01)
    flagged = sum(int(np.count_nonzero(a[m] > t)) for a, m in zip(maps, masks))
    assert achieved == flagged / n
    assert 0.01 - 1.0 / n <= achieved <= 0.01
    assert t < 10.0


def test_healthy_fpr_ties_never_exceed_rate():
    a = np.full((2, 4, 4), 0.3)
    t, achieved = healthy_fpr_threshold([a], [np.ones(a.shape, bool)], fpr=0.05)
    assert t == 0.3 and achieved == 0.0


def test_errors():
    maps, segs = _two_lesion_volumes()
    with pytest.raises(ValueError, match="no lesion"):
        greedy_threshold_search(maps, [np.zeros_like(s) for s in segs])
    with pytest.raises(ValueError, match="unknown threshold protocol"):
        search_threshold(maps, segs, "otsu")
    with pytest.raises(ValueError):
        greedy_threshold_search(maps, segs[:1])
    with pytest.raises(ValueError):
        healthy_fpr_threshold(maps, segs, fpr=0.0)
    with pytest.raises(ValueError):
        search_threshold(maps, segs, "exhaustive", cc_in_search=True)


def test_empty_interval_returns_lo():
    a = np.zeros((2, 3, 3))
    s = np.zeros(a.shape, bool)
    s[0, 0, 0] = True
    assert greedy_threshold_search([a], [s]) == (0.0, 0.0)
