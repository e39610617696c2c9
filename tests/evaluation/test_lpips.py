"""LPIPS from a local weights file (random weights written by the test: the arithmetic, not the calibration)."""

import numpy as np
import pandas as pd
import pytest
import torch

from brainuad.evaluation.lpips import LPIPS, lpips_metric, lpips_volume
from brainuad.evaluation.protocol import evaluate_healthy
from brainuad.reporting.tables import aggregate, wide

# the LPIPS weights file: fixture `weights` in tests/conftest.py


def test_distance_properties(weights):
    net = LPIPS(weights)
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
    assert torch.allclose(net(a, a), torch.zeros(2), atol=1e-7)  # identical images: 0
    d_ab, d_ba = net(a, b), net(b, a)
    assert torch.allclose(d_ab, d_ba) and (d_ab > 0).all()  # symmetric, positive
    # the linear layers weight the layer distances: zeroing them all gives 0
    for lin in net.lins:
        lin.weight.zero_()
    assert torch.allclose(net(a, b), torch.zeros(2))


def test_volume_mean_over_brain_slices_and_clear_errors(weights, tmp_path):
    net = LPIPS(weights)
    rng = np.random.default_rng(0)
    img, rec = rng.random((4, 32, 32)), rng.random((4, 32, 32))
    mask = np.zeros((4, 32, 32), bool)
    mask[1:3, 8:24, 8:24] = True
    per_slice = net(torch.from_numpy(img[1:3, None].astype(np.float32)), torch.from_numpy(rec[1:3, None].astype(np.float32)))
    assert lpips_volume(net, img, rec, mask) == pytest.approx(float(per_slice.mean()), rel=1e-6)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LPIPS(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not an LPIPS-VGG weights file"):
        LPIPS(bad)


def test_lpips_metric_from_the_config_value(weights):
    assert lpips_metric(None) is None and lpips_metric("") is None
    rng = np.random.default_rng(2)
    img, rec = rng.random((3, 32, 32)), rng.random((3, 32, 32))
    mask = np.ones((3, 32, 32), bool)
    metric = lpips_metric(weights, device="cpu")
    assert metric(img, rec, mask) == pytest.approx(lpips_volume(LPIPS(weights), img, rec, mask), rel=1e-6)


def test_tables_say_not_configured_without_weights(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.random((2, 8, 16, 16)).astype(np.float32)
    masks = np.ones_like(imgs, dtype=np.uint8)
    summary, rows = evaluate_healthy(np.abs(imgs - 0.5), masks, ["val", "test"], ["a", "b"], images=imgs,
                                     recons=imgs * 0.9, median=0, erode=0, fprs=(0.1,))
    assert summary["lpips"] == "not configured" and "lpips" not in rows[1]
    d = tmp_path / "f0"
    d.mkdir()
    pd.DataFrame(rows).to_csv(d / "metrics.tsv", sep="\t", index=False)
    (d / "threshold.json").write_text(__import__("json").dumps(summary))
    spec = {"rows": [{"model": "ae"}], "datasets": ["h"], "metrics": ["ssim", "lpips"]}
    long = aggregate(spec, lambda *a: d, [0], {"ae": {}}, {"h": {}})
    shown = wide(long)
    assert shown.iloc[0, 1] == "not configured" and shown.iloc[0, 0] not in ("n/a", "not configured")
