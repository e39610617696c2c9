"""P8.1 analyses: slice-wise detection AUPRC (against scikit-learn on a hand-built case) and the cubic size fit."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from brainuad.analysis.p81 import lesion_size_fit, lesion_size_figure, slice_auprc, slice_scores


def test_slice_labels_and_l1_scores_by_hand():
    img = np.zeros((3, 2, 2))
    rec = np.zeros((3, 2, 2))
    rec[0] = 0.1                     # slice 0: l1 0.1
    rec[1, 0, 0] = 0.8               # slice 1: l1 0.8 / 4 = 0.2
    seg = np.zeros((3, 2, 2))
    seg[1, 1, 1] = 1                 # only slice 1 abnormal
    labels, scores = slice_scores([img], [rec], [seg])
    assert labels.tolist() == [False, True, False]
    assert np.allclose(scores, [0.1, 0.2, 0.0])
    mask = np.zeros((3, 2, 2))
    mask[1, 0] = 1                   # brain = the top row of slice 1; slices 0 and 2 have none
    _, masked = slice_scores([img], [rec], [seg], [mask])
    assert np.allclose(masked, [0.0, 0.4, 0.0])


def test_slice_auprc_pools_volumes_and_equals_sklearn():
    rng = np.random.default_rng(0)
    imgs, recs, segs = [], [], []
    for d in (5, 7):                 # two "pathology sets" with different slice counts
        img = rng.random((d, 4, 4))
        rec = img + rng.normal(0, 0.1, img.shape)
        seg = np.zeros_like(img)
        seg[1:3, 2, 2] = 1
        imgs.append(img), recs.append(rec), segs.append(seg)
    labels, scores = slice_scores(imgs, recs, segs)
    assert labels.sum() == 4 and len(labels) == 12
    expected = average_precision_score(labels, scores)
    assert slice_auprc(labels, scores) == pytest.approx(expected)
    # hand-computed: scores ranked abnormal, normal, abnormal -> AP = (1/1 + 2/3) / 2
    assert slice_auprc(np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(slice_auprc(np.zeros(3, bool), np.arange(3.0)))


def test_lesion_size_fit_recovers_a_known_cubic(tmp_path):
    x = np.linspace(10, 5000, 40)
    coeffs = np.array([2e-11, -1e-7, 2e-4, 0.05])
    y = np.polyval(coeffs, x)
    y[3] = np.nan                    # dropped
    assert np.allclose(lesion_size_fit(x, y), coeffs, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="more than 3 finite points"):
        lesion_size_fit([1, 2, 3], [0.1, 0.2, 0.3])
    lesion_size_figure({"2D": (x, y), "3D": (x, y + 0.1)}, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000
