import numpy as np

from brainuad.evaluation.protocol import evaluate_healthy, evaluate_pathology


def _case(rng, lesion_value):
    mask = np.zeros((8, 16, 16), np.uint8)
    mask[:, 2:14, 2:14] = 1
    seg = np.zeros_like(mask)
    seg[2:6, 5:10, 5:10] = 1
    amap = 0.1 * rng.random(mask.shape) * mask
    amap[seg > 0] = lesion_value
    return amap.astype(np.float32), seg, mask


def test_pathology_thresholds_separate_lesions():
    rng = np.random.default_rng(0)
    cases = [_case(rng, v) for v in (0.8, 0.9, 0.7, 0.85)]
    maps, segs, masks = zip(*cases)
    summary, rows = evaluate_pathology(maps, segs, masks, ["val", "val", "test", "test"], list("abcd"),
                                       median=0, erode=0, min_component=7)
    assert 0.1 <= summary["threshold"] < 0.7 and 0.1 <= summary["threshold_oracle"] < 0.7
    assert all(r["dice"] == 1.0 and r["dice_oracle"] == 1.0 and r["auprc"] == 1.0 for r in rows)
    assert summary["pooled"]["auprc_pooled"] == 1.0 and summary["pooled"]["dice_pooled"] == 1.0


def test_l1_ratio_and_healthy_metrics():
    rng = np.random.default_rng(1)
    amap, seg, mask = _case(rng, 0.5)
    image = np.full(mask.shape, 0.5, np.float32) * mask
    recon = image.copy()
    recon[seg > 0] -= 0.4  # lesion error 0.4
    recon[(mask > 0) & (seg == 0)] -= 0.1  # healthy error 0.1
    _, rows = evaluate_pathology([amap, amap], [seg, seg], [mask, mask], ["val", "test"], ["a", "b"],
                                 images=[image, image], recons=[recon, recon], median=0, erode=0)
    assert np.isclose(rows[1]["l1_ratio"], 4.0, atol=1e-5)
    summary, hrows = evaluate_healthy([amap, amap], [mask, mask], ["val", "test"], ["a", "b"],
                                      images=[image, image], recons=[image, image], median=0, erode=0, fprs=[0.1])
    assert hrows[1]["l1"] == 0 and np.isclose(hrows[1]["ssim"], 1.0)
    inside = amap[mask > 0]
    t = summary["fpr_thresholds"]["0.1"]
    assert (inside > t).mean() <= 0.1 and (inside >= t).mean() >= 0.1 - 1 / inside.size
