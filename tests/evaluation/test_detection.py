"""Lesion-wise detection, voxel AUROC, healthy-FPR thresholds applied, and evaluation-protocol overrides."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brainuad.evaluation import overrides
from brainuad.evaluation.lesions import lesion_detection, normalise_strata, pooled_lesion_sensitivity
from brainuad.evaluation.metrics import pooled_auroc, roc_auc
from brainuad.evaluation.protocol import apply_fpr_thresholds, evaluate_pathology


def _two_lesions_one_hit_one_miss_one_fp():
    """(12, 12, 12) volume: lesion A (a 2x2x2 cube, 8 voxels) hit by 1 predicted voxel, lesion B (3x3x3, 27
    voxels) missed, and one predicted 2x2x1 blob (4 voxels) far from both: a false positive."""
    seg = np.zeros((12, 12, 12), bool)
    seg[1:3, 1:3, 1:3] = True            # A: 8 voxels
    seg[7:10, 7:10, 7:10] = True         # B: 27 voxels
    pred = np.zeros_like(seg)
    pred[1, 1, 1] = True                 # inside A: hits it (1 of 8 voxels)
    pred[1:3, 9:11, 1] = True            # far from both lesions: 4-voxel false positive
    return pred, seg


def test_two_lesions_one_hit_one_miss_one_false_positive():
    pred, seg = _two_lesions_one_hit_one_miss_one_fp()
    out = lesion_detection(pred, seg, strata={"small": 10, "large": None})
    assert (out["n_lesions"], out["n_detected"], out["fp_components"]) == (2, 1, 1)
    assert out["lesion_sensitivity"] == 0.5
    # A (8 voxels) is small and detected, B (27) large and missed; the FP blob (4 voxels) is small
    assert (out["n_lesions_small"], out["n_detected_small"], out["lesion_sensitivity_small"]) == (1, 1, 1.0)
    assert (out["n_lesions_large"], out["n_detected_large"], out["lesion_sensitivity_large"]) == (1, 0, 0.0)
    assert (out["fp_components_small"], out["fp_components_large"]) == (1, 0)


def test_overlap_fraction_decides_detection_and_touching_predictions_are_no_false_positives():
    pred, seg = _two_lesions_one_hit_one_miss_one_fp()
    # 1 of A's 8 voxels = 12.5 %: detected at overlap 0.125, missed at 0.2; the hitting voxel is never an FP
    assert lesion_detection(pred, seg, overlap=0.125)["n_detected"] == 1
    out = lesion_detection(pred, seg, overlap=0.2)
    assert out["n_detected"] == 0 and out["fp_components"] == 1
    pred[7:10, 7:10, 7] = True  # 9 of B's 27 voxels = 1/3
    assert lesion_detection(pred, seg, overlap=0.3)["n_detected"] == 1
    assert lesion_detection(pred, seg, overlap=0.34)["n_detected"] == 0
    with pytest.raises(ValueError, match="overlap"):
        lesion_detection(pred, seg, overlap=1.5)


def test_subject_without_lesions_and_strata_rules():
    empty = np.zeros((4, 4, 4), bool)
    pred = empty.copy()
    pred[0, 0, 0] = True
    out = lesion_detection(pred, empty)
    assert out["n_lesions"] == 0 and math.isnan(out["lesion_sensitivity"]) and out["fp_components"] == 1
    assert [n for n, _ in normalise_strata({"large": None, "small": 5, "medium": 50})] == ["small", "medium", "large"]
    with pytest.raises(ValueError, match="null"):
        normalise_strata({"small": 5, "medium": 50})
    rows = [lesion_detection(*_two_lesions_one_hit_one_miss_one_fp()), lesion_detection(pred, empty)]
    assert pooled_lesion_sensitivity(rows) == 0.5


def test_diagonal_voxels_are_one_lesion_with_26_connectivity_and_two_with_6():
    seg = np.zeros((4, 4, 4), bool)
    seg[0, 0, 0] = seg[1, 1, 1] = True
    assert lesion_detection(seg, seg)["n_lesions"] == 1
    assert lesion_detection(seg, seg, connectivity=1)["n_lesions"] == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    y = rng.random(500) < 0.2
    s = np.round(rng.random(500) + y * 0.3, 1)  # rounded: many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    maps = [rng.random((4, 5, 6)) for _ in range(2)]
    segs = [rng.random((4, 5, 6)) < 0.3 for _ in range(2)]
    masks = [rng.random((4, 5, 6)) < 0.8 for _ in range(2)]
    want = roc_auc_score(np.concatenate([g[m] for g, m in zip(segs, masks)]),
                         np.concatenate([a[m] for a, m in zip(maps, masks)]))
    assert pooled_auroc(maps, segs, masks) == pytest.approx(want, abs=1e-12)
    assert math.isnan(roc_auc(np.zeros(5), np.arange(5)))


def test_auroc_hand_computed():
    # positives 0.8, 0.4; negatives 0.5, 0.1: pairs (0.8>0.5, 0.8>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.5, 0.1]) == 0.75
    assert roc_auc([1, 0], [0.3, 0.3]) == 0.5  # a tie counts one half


def test_fpr_thresholds_applied_on_a_hand_computed_case():
    """One 1 x 4 x 4 test map without post-processing: brain = all 16 voxels, lesion = 2 voxels (values 0.9,
    0.6); healthy voxels 0.7, 0.5 and twelve 0.1. Threshold 0.55 (map > t): predicted 0.9, 0.6, 0.7 -> TP 2,
    FP 1 -> Dice 4/5, sensitivity 1, FPR 1/14; threshold 0.8: predicted 0.9 -> Dice 2/3, sensitivity 1/2, FPR 0."""
    amap = np.full((1, 4, 4), 0.1)
    seg = np.zeros((1, 4, 4), bool)
    amap[0, 0, 0], amap[0, 0, 1], amap[0, 1, 0], amap[0, 1, 1] = 0.9, 0.6, 0.7, 0.5
    seg[0, 0, 0] = seg[0, 0, 1] = True
    mask = np.ones_like(seg)
    rows = apply_fpr_thresholds([amap], [seg], [mask], ["test"], ["s"], {"0.1": 0.55, "0.01": 0.8}, median=0,
                                erode=0, min_component=0)
    assert [r["target_fpr"] for r in rows] == [0.01, 0.1]
    low, high = rows[1], rows[0]
    assert low["threshold"] == 0.55 and low["dice"] == pytest.approx(0.8) and low["sensitivity"] == 1.0
    assert low["fpr"] == pytest.approx(1 / 14)
    assert high["dice"] == pytest.approx(2 / 3) and high["sensitivity"] == 0.5 and high["fpr"] == 0.0
    with pytest.raises(ValueError, match="no healthy-FPR thresholds"):
        apply_fpr_thresholds([amap], [seg], [mask], ["test"], ["s"], {})


def test_evaluate_pathology_writes_lesion_and_auroc_columns():
    pred, seg = _two_lesions_one_hit_one_miss_one_fp()
    amap = pred.astype(float)
    maps, segs, masks = [amap, amap], [seg, seg], [np.ones_like(seg)] * 2
    summary, rows = evaluate_pathology(maps, segs, masks, ["val", "test"], ["a", "b"], median=0, erode=0,
                                       min_component=0, lesions={"strata": {"small": 10, "large": None}})
    assert rows[1]["n_lesions"] == 2 and rows[1]["fp_components"] == 1 and rows[1]["lesion_sensitivity"] == 0.5
    assert 0.5 < rows[1]["auroc"] <= 1.0
    assert summary["pooled"]["lesion_sensitivity_pooled"] == 0.5 and "auroc_pooled" in summary["pooled"]


def test_protocol_ids_name_what_differs():
    ev = {"median": 5, "erode": 3, "erode_mode": "2d", "min_component": 7,
          "threshold": {"protocol": "greedy", "steps": 10, "cc_in_search": False}, "healthy_fpr": [0.01]}
    assert overrides.protocol_id(ev, None) == "default"
    assert overrides.protocol_id(ev, {"median": 5}) == "default"
    nopp = {"median": 0, "erode": 0, "min_component": 0}
    assert overrides.protocol_id(ev, nopp) == "erode~0__median~0__min_component~0"
    assert overrides.protocol_id(ev, {"threshold": {"cc_in_search": True}}) == "threshold.cc_in_search~true"
    eff = overrides.effective_options(ev, {"threshold": {"steps": 4}})
    assert eff["threshold"] == {"protocol": "greedy", "steps": 4, "cc_in_search": False} and eff["median"] == 5
    assert overrides.resolve(ev, {"median": 0}, {"erode": 0}) == {"median": 0, "erode": 0}
    with pytest.raises(ValueError, match="healthy_fpr"):
        overrides.effective_options(ev, {"healthy_fpr": [0.5]})
