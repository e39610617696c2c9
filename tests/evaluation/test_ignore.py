"""Ignored voxels (e.g. WMH "other pathology") leave every voxel-wise metric; hand-computed values.

One (1, 4, 4) volume, brain mask = all 16 voxels, no median filter / erosion / component filter:

* lesion: 2 voxels, map 0.9, |image - recon| 0.5
* ignore: 2 voxels, map 0.95, |image - recon| 1.0
* the other 12 voxels: map 0.1, |image - recon| 0.1

With the ignore mask: the best threshold flags exactly the lesion (Dice 1), FPR 0 over 12 healthy
voxels, AUPRC 1, l1_lesion 0.5, l1_healthy 0.1, ratio 5. Without it the ignore voxels outrank the
lesion: best pooled Dice 2*2/(4+2) = 2/3, AUPRC = precision 2/4 at recall 1 = 0.5, FPR at that
threshold 2/14, l1_healthy (12*0.1 + 2*1.0)/14 = 3.2/14, ratio 0.5 / (3.2/14) = 2.1875.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainuad.evaluation.protocol import drop_ignored, evaluate_healthy, evaluate_pathology

LESION = [(0, 0, 0), (0, 0, 1)]
IGNORE = [(0, 3, 2), (0, 3, 3)]


def volumes():
    amap = np.full((1, 4, 4), 0.1, np.float32)
    seg = np.zeros((1, 4, 4), np.uint8)
    ignore = np.zeros((1, 4, 4), np.uint8)
    err = np.full((1, 4, 4), 0.1)
    for v in LESION:
        amap[v], seg[v], err[v] = 0.9, 1, 0.5
    for v in IGNORE:
        amap[v], ignore[v], err[v] = 0.95, 1, 1.0
    image = np.full((1, 4, 4), 0.2)
    return amap, seg, np.ones((1, 4, 4), np.uint8), ignore, image, image + err


def pathology(with_ignore: bool):
    amap, seg, mask, ignore, image, recon = volumes()
    return evaluate_pathology([amap, amap], [seg, seg], [mask, mask], ["val", "test"], ["a", "b"],
                              images=[image, image], recons=[recon, recon], median=0, erode=0, min_component=0,
                              protocol="exhaustive", ignores=[ignore, ignore] if with_ignore else None)


def test_pathology_metrics_without_ignored_voxels():
    summary, rows = pathology(with_ignore=True)
    assert summary["search_dice_val"] == pytest.approx(1.0)
    assert summary["pooled"]["auprc_pooled"] == pytest.approx(1.0)
    row = rows[1]
    assert row["dice"] == pytest.approx(1.0) and row["dice_oracle"] == pytest.approx(1.0)
    assert (row["tp"], row["fp"], row["fn"], row["predicted_voxels"]) == (2, 0, 0, 2)
    assert row["fpr"] == 0.0 and row["auprc"] == pytest.approx(1.0)
    assert row["l1_lesion"] == pytest.approx(0.5) and row["l1_healthy"] == pytest.approx(0.1)
    assert row["l1_ratio"] == pytest.approx(5.0)


def test_pathology_metrics_when_ignore_voxels_count():
    summary, rows = pathology(with_ignore=False)
    assert summary["search_dice_val"] == pytest.approx(2 / 3)
    row = rows[1]
    assert row["dice"] == pytest.approx(2 / 3) and row["fpr"] == pytest.approx(2 / 14)
    assert row["auprc"] == pytest.approx(0.5)
    assert row["l1_healthy"] == pytest.approx(3.2 / 14) and row["l1_ratio"] == pytest.approx(2.1875)


def test_healthy_scores_without_ignored_voxels():
    amap, _, mask, ignore, _, _ = volumes()
    kw = dict(median=0, erode=0, fprs=(0.1,))
    summary, rows = evaluate_healthy([amap, amap], [mask, mask], ["val", "test"], ["a", "b"],
                                     ignores=[ignore, ignore], **kw)
    # brain voxels without the ignored ones: 2 x 0.9 and 12 x 0.1 per volume -> 90 % quantile = 0.9
    assert rows[1]["mean_score"] == pytest.approx((2 * 0.9 + 12 * 0.1) / 14)
    assert summary["fpr_thresholds"]["0.1"] == pytest.approx(0.9)
    summary, rows = evaluate_healthy([amap, amap], [mask, mask], ["val", "test"], ["a", "b"], **kw)
    assert rows[1]["mean_score"] == pytest.approx((2 * 0.95 + 2 * 0.9 + 12 * 0.1) / 16)
    assert summary["fpr_thresholds"]["0.1"] == pytest.approx(0.95)


def test_drop_ignored_leaves_inputs_alone():
    amap, seg, mask, ignore, _, _ = volumes()
    maps, masks, segs = drop_ignored([amap], [mask], [seg], [ignore])
    assert amap[0, 3, 3] == np.float32(0.95) and mask.all()  # inputs not modified
    assert maps[0][0, 3, 3] == 0 and not masks[0][0, 3, 3] and int(masks[0].sum()) == 14
    assert segs[0].sum() == 2
    assert drop_ignored([amap], [mask], [seg], None) == ([amap], [mask], [seg])
