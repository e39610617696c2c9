"""l1_lpips (the RA / PHANES score) against an independent LPIPS computation, and its "not configured" path."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainuad.evaluation.lpips import LPIPS
from brainuad.models.backbones import BackboneNotConfigured
from brainuad.scoring import score
from brainuad.scoring.ssim import gaussian_filter

# the LPIPS weights file: fixture `weights` in tests/conftest.py


def _spatial_lpips(net: LPIPS, a, b):
    """LPIPS with spatial output from brainuad.evaluation.lpips' network: sum_l up(lin_l(diff_l^2)), divided
    by the 5 layers (the scoring averages the layers)."""
    def prep(x):
        x = x.expand(-1, 3, -1, -1) * 2 - 1
        return (x - torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)) / torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    fa, fb = net._feats(prep(a)), net._feats(prep(b))
    return sum(F.interpolate(lin((x - y) ** 2), size=a.shape[-2:], mode="bilinear", align_corners=False)
               for lin, x, y in zip(net.lins, fa, fb)) / 5


def _volume(seed=0, d=3, n=32):
    rng = np.random.default_rng(seed)
    image = rng.random((1, 1, d, n, n)).astype(np.float32)
    recons = np.clip(image + rng.normal(0, 0.2, (2, 1, 1, d, n, n)), 0, 1).astype(np.float32)
    mask = np.zeros((1, 1, d, n, n), bool)
    mask[..., 1:, 4:28, 4:28] = True  # slice 0 has no brain
    return image, recons, mask


def test_l1_lpips_is_the_residual_times_the_spatial_lpips(weights):
    image, recons, mask = _volume()
    spec = {"kind": "imagenet", "arch": "vgg16", "weights": str(weights)}
    out = score("l1_lpips", image, recons, mask, backbone=spec, sigma=0.0)
    assert out.shape == image.shape and (out >= 0).all() and (out[~mask] == 0).all()
    net = LPIPS(weights)
    x = torch.from_numpy(image[0, 0, 1:, None])
    r = torch.from_numpy(recons.mean(0)[0, 0, 1:, None]).clamp(0, 1)
    with torch.no_grad():
        expected = ((x - r).abs() * _spatial_lpips(net, x, r))[:, 0].numpy() * mask[0, 0, 1:]
    np.testing.assert_allclose(out[0, 0, 1:], expected, rtol=1e-4, atol=1e-7)
    assert (out[0, 0, 0] == 0).all()
    # smoothing: the distance map is Gaussian-filtered in plane before the product
    smooth = score("l1_lpips", image, recons, mask, backbone=spec, sigma=1.2)
    with torch.no_grad():
        dist = gaussian_filter(_spatial_lpips(net, x, r), 1.2, dims=2)
    expected = ((x - r).abs() * dist)[:, 0].numpy() * mask[0, 0, 1:]
    np.testing.assert_allclose(smooth[0, 0, 1:], expected, rtol=1e-4, atol=1e-7)


def test_identical_reconstruction_scores_zero_and_larger_errors_score_higher(weights):
    image, recons, mask = _volume(1)
    spec = {"kind": "imagenet", "arch": "vgg16", "weights": str(weights), "layers": [1, 2, 3]}
    same = score("l1_lpips", image, np.stack([image, image]), mask, backbone=spec)
    assert np.allclose(same, 0)
    bright = image.copy()
    bright[..., 10:20, 10:20] = np.clip(bright[..., 10:20, 10:20] + 0.5, 0, 1)  # a "lesion" the recon lacks
    amap = score("l1_lpips", bright, image[None], mask, backbone=spec)
    inside = amap[0, 0, 1:, 10:20, 10:20].mean()
    outside = amap[0, 0, 1:][mask[0, 0, 1:]].mean()
    assert inside > 5 * outside


def test_not_configured_without_weights(tmp_path):
    image, recons, mask = _volume()
    with pytest.raises(BackboneNotConfigured, match="not configured"):
        score("l1_lpips", image, recons, mask)
    with pytest.raises(BackboneNotConfigured, match="does not exist"):
        score("l1_lpips", image, recons, mask,
              backbone={"kind": "imagenet", "arch": "vgg16", "weights": str(tmp_path / "missing.pth")})


def test_a_not_configured_scoring_reaches_the_table_as_not_configured(tmp_path):
    """score_stored -> evaluate_stored -> aggregate: the row says "not configured", never a number."""
    from brainuad.evaluation.protocol import evaluate_stored
    from brainuad.reporting.tables import aggregate, wide
    from brainuad.scoring.stored import score_stored

    rng = np.random.default_rng(0)
    n, d = 3, 2
    images = rng.random((n, d, 16, 16)).astype(np.float16)
    masks = np.ones((n, d, 16, 16), bool)
    segs = np.zeros((n, d, 16, 16), np.uint8)
    segs[:, :, 4:8, 4:8] = 1
    subjects = [f"s{i}" for i in range(n)]
    np.savez(tmp_path / "volumes.npz", images=images, masks=masks, segs=segs, subjects=np.array(subjects))
    np.savez(tmp_path / "recon.npz", recons=images[None], subjects=np.array(subjects),
             split=np.array(["val", "test", "test"]))
    scoring = {"name": "l1_lpips", "backbone": {"kind": "imagenet", "arch": "vgg16", "weights": str(tmp_path / "no.pth")}}
    out = score_stored(scoring, tmp_path / "recon.npz", tmp_path / "volumes.npz")
    assert "not configured" in str(out["not_configured"]) and np.isnan(out["maps"].astype(float)).all()
    np.savez(tmp_path / "scores.npz", **out)
    options = {"median": 5, "erode": 3, "min_component": 7, "threshold": {"protocol": "greedy"}}
    summary, rows = evaluate_stored("pathology", options, tmp_path / "scores.npz", tmp_path / "recon.npz",
                                    tmp_path / "volumes.npz")
    assert "not configured" in summary["not_configured"] and summary["backbone"] == "ImageNet vgg16 (no.pth)"
    assert [r["subject"] for r in rows] == subjects and all(set(r) == {"subject", "split"} for r in rows)
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "threshold.json").write_text(json.dumps(summary))
    (ev / "metrics.tsv").write_text("subject\tsplit\n" + "".join(f"{r['subject']}\t{r['split']}\n" for r in rows))
    spec = {"rows": [{"model": "ra", "scoring": "lpips"}], "datasets": ["ds"], "metrics": ["dice_oracle", "auprc"]}
    long = aggregate(spec, lambda *a: ev, [0], {"ra": {"label": "RA"}}, {"ds": {}})
    assert list(long["note"]) == ["not configured"] * 2 and long["mean"].isna().all()
    assert set(long["backbone"]) == {"ImageNet vgg16 (no.pth) (scoring lpips)"}
    shown = wide(long)
    assert (shown.iloc[0] == "not configured").all()
