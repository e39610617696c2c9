"""Per-subject metrics against hand computations."""

import math

import numpy as np
import pytest

from brainuad.evaluation.metrics import (
    auprc,
    dice,
    l1_ratio,
    pooled_auprc,
    reconstruction_metrics,
    segmentation_metrics,
)


def test_dice_by_hand():
    pred = np.array([1, 1, 0, 0, 1], bool)
    target = np.array([1, 0, 0, 1, 1], np.uint8)
    assert dice(pred, target) == pytest.approx(2 * 2 / (3 + 3))
    assert dice(pred, pred) == 1.0
    assert dice(pred, np.zeros(5)) == 0.0
    assert math.isnan(dice(np.zeros(5), np.zeros(5)))
    assert dice(np.zeros(5), np.zeros(5), empty=1.0) == 1.0
    with pytest.raises(ValueError):
        dice(pred, target[:4])


def _row_volume():
    amap = np.array([0.9, 0.8, 0.3, 0.1]).reshape(1, 1, 4)
    seg = np.array([1, 0, 1, 0], bool).reshape(1, 1, 4)
    return amap, seg, np.ones(amap.shape, bool)


def test_segmentation_metrics_by_hand():
    amap, seg, mask = _row_volume()
    r = segmentation_metrics(amap, seg, mask, 0.5, min_component=0)
    # predicted: 0.9 (lesion), 0.8 (healthy)
    assert r["dice"] == pytest.approx(0.5)
    assert r["precision"] == pytest.approx(0.5)
    assert r["recall"] == pytest.approx(0.5)
    assert r["fpr"] == pytest.approx(0.5)
    # ranking 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-): AP = (1/1 + 2/3) / 2
    assert r["auprc"] == pytest.approx((1 + 2 / 3) / 2)
    assert (r["tp"], r["fp"], r["fn"], r["lesion_voxels"], r["predicted_voxels"]) == (1, 1, 1, 2, 2)


def test_auprc_only_counts_brain_voxels():
    amap = np.array([0.9, 0.8, 0.3, 0.1, 0.95, 0.99]).reshape(1, 2, 3)
    seg = np.array([1, 0, 1, 0, 0, 0], bool).reshape(1, 2, 3)
    mask = np.array([1, 1, 1, 1, 0, 0], bool).reshape(1, 2, 3)
    assert auprc(amap, seg, mask) == pytest.approx((1 + 2 / 3) / 2)
    # with the two hot non-brain voxels ranked first: precisions 1/3 at 0.9, 2/5 at 0.3
    assert auprc(amap, seg) == pytest.approx((1 / 3 + 2 / 5) / 2)


def test_segmentation_metrics_no_lesion_gives_nan():
    amap, _, mask = _row_volume()
    r = segmentation_metrics(amap, np.zeros(amap.shape, bool), mask, 0.5, min_component=0)
    for k in ("dice", "precision", "recall", "auprc"):
        assert math.isnan(r[k]), k
    assert r["fpr"] == pytest.approx(0.5)
    assert r["lesion_voxels"] == 0 and r["predicted_voxels"] == 2


def test_segmentation_metrics_nothing_predicted():
    amap, seg, mask = _row_volume()
    r = segmentation_metrics(amap, seg, mask, 0.95, min_component=0)
    assert (r["dice"], r["precision"], r["recall"], r["fpr"]) == (0.0, 0.0, 0.0, 0.0)
    assert r["auprc"] == pytest.approx((1 + 2 / 3) / 2)  # threshold-free


def test_segmentation_metrics_applies_component_filter():
    amap = np.zeros((10, 10, 10))
    seg = np.zeros(amap.shape, bool)
    seg[2:4, 2:4, 2:4] = True        # 8 voxels, predicted
    amap[seg] = 1.0
    amap[7, 7, 2:8] = 1.0            # 6-voxel false positive line
    mask = np.ones(amap.shape, bool)
    r7 = segmentation_metrics(amap, seg, mask, 0.5)
    assert r7["dice"] == 1.0 and r7["fp"] == 0
    r0 = segmentation_metrics(amap, seg, mask, 0.5, min_component=0)
    assert r0["dice"] == pytest.approx(16 / 22) and r0["fp"] == 6
    assert r0["fpr"] == pytest.approx(6 / (1000 - 8))


def test_pooled_vs_per_volume_auprc():
    maps = [np.array([0.9, 0.1]).reshape(1, 1, 2), np.array([0.8, 0.7]).reshape(1, 1, 2)]
    segs = [np.array([1, 0]).reshape(1, 1, 2), np.array([0, 1]).reshape(1, 1, 2)]
    masks = [np.ones((1, 1, 2), bool)] * 2
    per_volume = [auprc(a, s, m) for a, s, m in zip(maps, segs, masks)]
    assert per_volume == [pytest.approx(1.0), pytest.approx(0.5)]  # mean 0.75
    # pooled ranking 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-)
    assert pooled_auprc(maps, segs, masks) == pytest.approx((1 + 2 / 3) / 2)
    assert pooled_auprc(maps, segs) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(pooled_auprc(maps, [np.zeros((1, 1, 2))] * 2, masks))


def test_l1_ratio_by_hand():
    image = np.zeros((1, 2, 4))
    recon = np.zeros((1, 2, 4))
    seg = np.zeros((1, 2, 4), bool)
    mask = np.zeros((1, 2, 4), bool)
    mask[0, 0, :] = True
    mask[0, 1, :2] = True                    # 6 brain voxels
    seg[0, 0, :2] = True                     # 2 lesion voxels in the brain
    seg[0, 1, 3] = True                      # lesion voxel outside the brain: ignored
    recon[0, 0] = [0.4, 0.6, 0.1, 0.1]       # lesion errors 0.4, 0.6; healthy 0.1, 0.1
    recon[0, 1] = [0.1, 0.3, 5.0, 5.0]       # healthy 0.1, 0.3; outside the brain ignored
    r = l1_ratio(image, recon, seg, mask)
    assert r["l1_lesion"] == pytest.approx(0.5)
    assert r["l1_healthy"] == pytest.approx(0.15)
    assert r["l1_ratio"] == pytest.approx(0.5 / 0.15)


def test_l1_ratio_edge_cases():
    x = np.zeros((1, 1, 4))
    mask = np.ones(x.shape, bool)
    no_lesion = l1_ratio(x, x + 0.1, np.zeros(x.shape), mask)
    assert math.isnan(no_lesion["l1_lesion"]) and math.isnan(no_lesion["l1_ratio"])
    assert no_lesion["l1_healthy"] == pytest.approx(0.1)
    seg = np.array([1, 0, 0, 0]).reshape(x.shape)
    perfect_healthy = l1_ratio(x, x + 0.2 * seg, seg, mask)
    assert perfect_healthy["l1_ratio"] == math.inf


def _volume(seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((8, 8, 8))
    mask = np.zeros(x.shape, bool)
    mask[:, :, :4] = True
    x[mask] = rng.uniform(0.2, 0.8, mask.sum())
    return x, mask


def test_reconstruction_metrics_identical():
    x, mask = _volume()
    r = reconstruction_metrics(x, x.copy(), mask)
    assert r["ssim"] == pytest.approx(1.0)
    assert r["l1"] == 0.0
    assert r["psnr"] == math.inf


def test_reconstruction_metrics_constant_error():
    x, mask = _volume()
    y = x.copy()
    y[mask] += 0.1
    r = reconstruction_metrics(x, y, mask)
    assert r["psnr"] == pytest.approx(20.0)          # mse 0.01 -> 10 log10(1 / 0.01)
    assert r["l1"] == pytest.approx(0.1)
    assert r["ssim"] < 1.0
    # over the whole volume the identical background halves the mse: + 10 log10(2) dB
    rv = reconstruction_metrics(x, y, mask, psnr_region="volume")
    assert rv["psnr"] == pytest.approx(20.0 + 10 * np.log10(2))
    with pytest.raises(ValueError):
        reconstruction_metrics(x, y, mask, psnr_region="brain")


def test_average_precision_by_hand():
    from brainuad.evaluation.metrics import average_precision

    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.7 (neg): thresholds 0.9 -> P 1, R 1/2; 0.8 -> P 1/2, R 1/2;
    # 0.7 (tie, one step) -> P 2/4, R 1: AP = 1/2 * 1 + 0 * 1/2 + 1/2 * 1/2 = 0.75
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.7]) == pytest.approx(0.75)
    assert average_precision([1, 1, 0], [0.1, 0.2, 0.3]) == pytest.approx((1 / 2 * 1 / 2) + (1 / 2 * 2 / 3))
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="differ in shape"):
        average_precision([1, 0], [0.1])


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_and_psnr_match_sklearn_and_skimage(seed):
    from skimage.metrics import peak_signal_noise_ratio
    from sklearn.metrics import average_precision_score

    from brainuad.evaluation.metrics import average_precision, psnr

    rng = np.random.default_rng(seed)
    labels = rng.random(5000) < 0.1
    scores = np.round(rng.random(5000) + labels * 0.3, 2).astype(np.float16)  # many ties, float16 as stored
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    x, y = rng.random(300), rng.random(300)
    assert psnr(x, y, 1.0) == pytest.approx(peak_signal_noise_ratio(x, y, data_range=1.0), abs=1e-12)
    assert psnr(x, x, 1.0) == math.inf
