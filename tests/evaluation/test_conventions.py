"""The evaluation switches of config ``conventions`` on hand-built cases where the two conventions give
different, hand-computed results: post-processing order, small-component rule, AUPRC region, threshold ties."""

import numpy as np
import pytest

from brainuad.evaluation.metrics import pooled_auprc, segmentation_metrics
from brainuad.evaluation.postprocess import binarize, postprocess, remove_small_components
from brainuad.evaluation.protocol import evaluate_pathology
from brainuad.evaluation.threshold import greedy_threshold_search, search_threshold


# ---------------------------------------------------------------- postprocess_order
def test_order_mask_first_leaves_a_value_outside_the_mask():
    """Map 1 everywhere, brain mask = a 3 x 3 slice without its centre, median 3, no erosion.
    median_first: the median of ones is 1, times the mask -> the centre is 0.
    mask_first: the masked map has one 0 (the centre); its 3 x 3 (x 3 reflected copies) median window holds
    8 ones and 1 zero -> 1 at every voxel, the centre (outside the mask) included."""
    amap = np.ones((1, 3, 3))
    mask = np.ones((1, 3, 3), bool)
    mask[0, 1, 1] = False
    thesis = postprocess(amap, mask, median=3, erode=0, order="median_first")
    code = postprocess(amap, mask, median=3, erode=0, order="mask_first")
    np.testing.assert_array_equal(thesis[0], [[1, 1, 1], [1, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(code[0], np.ones((3, 3)))


def test_order_changes_values_inside_the_mask():
    """A row 0 1 5 5 5 with the mask on the first three voxels, median 3 (reflect boundary):
    median_first: medians 0 1 5 5 5, masked -> 0 1 5 0 0; mask_first: masked 0 1 5 0 0, medians 0 1 1 0 0."""
    amap = np.array([[[0, 1, 5, 5, 5]]], float)
    mask = np.array([[[1, 1, 1, 0, 0]]], bool)
    np.testing.assert_array_equal(postprocess(amap, mask, median=3, erode=0, order="median_first")[0, 0], [0, 1, 5, 0, 0])
    np.testing.assert_array_equal(postprocess(amap, mask, median=3, erode=0, order="mask_first")[0, 0], [0, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="order must be one of"):
        postprocess(amap, mask, order="mask_last")


# ---------------------------------------------------------------- component_rule
def test_seven_voxel_component():
    """fewer_than 7 keeps a 7-voxel component (7 is not fewer than 7); filled_at_most 7 removes it (7 <= 7)."""
    b = np.zeros((3, 5, 9), bool)
    b[1, 2, 1:8] = True  # 7 voxels in a row
    b[0, 0, 0] = True  # and a single voxel elsewhere
    kept_thesis = remove_small_components(b, 7, rule="fewer_than")
    kept_code = remove_small_components(b, 7, rule="filled_at_most")
    assert kept_thesis.sum() == 7 and kept_thesis[1, 2, 1:8].all()
    assert kept_code.sum() == 0


def test_filled_size_counts_the_hole():
    """A 3 x 3 x 3 cube without its centre: 26 voxels, hole-filled size 27 (the hole is enclosed in 3D).
    Limit 26: fewer_than keeps it (26 >= 26) and so does filled_at_most (27 > 26), although its own size is
    <= 26; limit 27: both remove it. A ring around a hole in one slice is open to the neighbouring slices in
    3D: not filled (8 voxels, filled size 8)."""
    b = np.zeros((5, 5, 5), bool)
    b[1:4, 1:4, 1:4] = True
    b[2, 2, 2] = False
    assert remove_small_components(b, 26, rule="fewer_than").sum() == 26
    assert remove_small_components(b, 26, rule="filled_at_most").sum() == 26
    assert remove_small_components(b, 27, rule="fewer_than").sum() == 0
    assert remove_small_components(b, 27, rule="filled_at_most").sum() == 0
    ring = np.zeros((3, 5, 5), bool)
    ring[1, 1:4, 1:4] = True
    ring[1, 2, 2] = False
    assert remove_small_components(ring, 8, rule="fewer_than").sum() == 8
    assert remove_small_components(ring, 8, rule="filled_at_most").sum() == 0
    with pytest.raises(ValueError, match="component rule"):
        remove_small_components(b, 7, rule="at_most")


def test_binarize_and_segmentation_metrics_take_the_rule():
    amap = np.zeros((3, 5, 9))
    amap[1, 2, 1:8] = 0.9  # a 7-voxel predicted lesion
    seg = amap > 0
    mask = np.ones_like(seg)
    assert binarize(amap, 0.5, min_component=7, component_rule="fewer_than").sum() == 7
    assert binarize(amap, 0.5, min_component=7, component_rule="filled_at_most").sum() == 0
    thesis = segmentation_metrics(amap, seg, mask, 0.5, min_component=7, component_rule="fewer_than")
    code = segmentation_metrics(amap, seg, mask, 0.5, min_component=7, component_rule="filled_at_most")
    assert thesis["dice"] == 1.0 and code["dice"] == 0.0


# ---------------------------------------------------------------- auprc_region
def _auprc_case():
    """Six voxels in a row: brain = the first four. Lesion voxels 0 (score 0.9) and 1 (score 0: zeroed by the
    erosion of the brain mask, it lies on the mask's border); healthy brain voxels 2 (0.5) and 3 (0);
    background 4, 5 (0, no lesion)."""
    amap = np.array([[[0.9, 0.0, 0.5, 0.0, 0.0, 0.0]]])
    seg = np.array([[[1, 1, 0, 0, 0, 0]]], bool)
    mask = np.array([[[1, 1, 1, 1, 0, 0]]], bool)
    return amap, seg, mask


def test_auprc_region_by_hand():
    """AP = sum (R_n - R_n-1) P_n over the thresholds 0.9, 0.5, 0. Both regions: at 0.9 P = 1, R = 1/2; at 0.5
    R does not grow. The zeroed lesion voxel is found only at threshold 0, with every voxel of the region:
    brain P = 2/4 -> AP = 1/2 + 1/2 * 1/2 = 3/4; volume P = 2/6 -> AP = 1/2 + 1/2 * 1/3 = 2/3."""
    amap, seg, mask = _auprc_case()
    brain = segmentation_metrics(amap, seg, mask, 0.7, min_component=0, auprc_region="brain")["auprc"]
    volume = segmentation_metrics(amap, seg, mask, 0.7, min_component=0, auprc_region="volume")["auprc"]
    assert brain == pytest.approx(3 / 4) and volume == pytest.approx(2 / 3)
    assert pooled_auprc([amap], [seg], [mask]) == pytest.approx(3 / 4)
    assert pooled_auprc([amap], [seg], None) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="auprc_region"):
        segmentation_metrics(amap, seg, mask, 0.7, auprc_region="lesion")


# ---------------------------------------------------------------- threshold_ties
def test_tie_between_two_thresholds():
    """Lesion voxels 0.3 and 1.0, a healthy voxel 0.1; interval [0, 1], 2 steps.
    Step 1: t = 0.25 -> {0.3, 1.0}, Dice 1; t = 0.75 -> {1.0}, Dice 2/3: keep [0, 0.5], candidate 0.25.
    Step 2: t = 0.125 -> {0.3, 1.0}, Dice 1; t = 0.375 -> {1.0}, 2/3: candidate 0.125, tied with 0.25.
    first -> 0.25, last (the code's >=) -> 0.125."""
    maps = [np.array([[[0.3, 1.0, 0.1]]])]
    segs = [np.array([[[1, 1, 0]]], bool)]
    assert greedy_threshold_search(maps, segs, steps=2, ties="first") == (0.25, 1.0)
    assert greedy_threshold_search(maps, segs, steps=2, ties="last") == (0.125, 1.0)
    assert search_threshold(maps, segs, "greedy", steps=2, ties="last") == (0.125, 1.0)


def test_flat_objective_first_and_last_candidate():
    """All scores 0 or 1: every candidate in (0, 1) gives the same Dice. The bisection keeps the lower half
    on ties, so the candidates are 0.25, 0.125, ..., 0.25 / 2^9: first -> 0.25, last -> 1 / 2048."""
    maps = [np.array([[[1.0, 1.0, 0.0, 1.0]]])]
    segs = [np.array([[[1, 1, 0, 0]]], bool)]
    t_first, d_first = greedy_threshold_search(maps, segs, steps=10, ties="first")
    t_last, d_last = greedy_threshold_search(maps, segs, steps=10, ties="last")
    assert (t_first, t_last) == (0.25, 1 / 2048) and d_first == d_last == pytest.approx(0.8)
    with pytest.raises(ValueError, match="ties"):
        greedy_threshold_search(maps, segs, ties="middle")


# ---------------------------------------------------------------- the whole pathology evaluation
def test_evaluate_pathology_uses_the_switches():
    """The AUPRC case as one validation and one test subject: the region switch reaches the rows and the
    pooled AUPRC, the ties switch the threshold. Dice on [0, 0.9]: 1/2 for t < 0.5 ({0.9, 0.5}), 2/3 for
    0.5 <= t < 0.9. Step 1 keeps [0.45, 0.9] with candidate 0.675 (2/3); every later best candidate ties at
    2/3: first -> 0.675; last -> step 10's lower quarter point 0.50625 + 0.0017578125 / 4 = 0.506689453125
    (intervals [0.45, 0.675], [0.45, 0.5625], [0.50625, 0.5625], [0.50625, 0.534375], ... halving)."""
    amap, seg, mask = _auprc_case()
    kw = dict(median=0, erode=0, min_component=0, steps=10)
    args = ([amap, amap], [seg, seg], [mask, mask], ["val", "test"], ["a", "b"])
    s_thesis, rows_thesis = evaluate_pathology(*args, **kw, auprc_region="brain", ties="first")
    s_code, rows_code = evaluate_pathology(*args, **kw, auprc_region="volume", ties="last")
    assert rows_thesis[1]["auprc"] == pytest.approx(3 / 4) and rows_code[1]["auprc"] == pytest.approx(2 / 3)
    assert s_thesis["pooled"]["auprc_pooled"] == pytest.approx(3 / 4)
    assert s_code["pooled"]["auprc_pooled"] == pytest.approx(2 / 3)
    assert s_thesis["threshold"] == pytest.approx(0.675) and s_code["threshold"] == pytest.approx(0.506689453125)
    assert s_thesis["search_dice_val"] == s_code["search_dice_val"] == pytest.approx(2 / 3)
