"""DRAEM-Net, PII and FPI (brainuad.models.synthetic_anomaly): shapes, losses against their definitions,
the loss decreasing on a tiny batch, map shape/range, determinism."""

import pytest
import torch
import torch.nn.functional as F

from brainuad.data import synthetic
from brainuad.models import build
from brainuad.models.base import check_model
from brainuad.models.synthetic_anomaly import binary_focal_loss, ssim_loss

SMALL = {
    "draem_net": {"recon_channels": [8, 16, 32], "seg_channels": [8, 16, 32]},
    "pii": {"channels": [8, 16, 32], "anomaly": {"cg_iterations": 50}},
    "fpi": {"channels": [8, 16, 32]},
}


def _slices(b=6, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, 1, n, n)
    x[..., 4:n - 4, 6:n - 6] = 0.3 + 0.5 * torch.rand(b, 1, n - 8, n - 12, generator=g)
    return x


@pytest.mark.parametrize("name", sorted(SMALL))
def test_interface_map_shape_and_range(name):
    torch.manual_seed(0)
    model = build(name, **SMALL[name]).eval()
    check_model(model)
    assert model.produces == "map" and model.trainable and model.input_dims == 2
    x = _slices()
    mask = x > 0
    out = model.anomaly_map(x, mask)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask])) and (out[mask] > 0).all()
    with pytest.raises(ValueError, match="divisible"):
        model.anomaly_map(torch.zeros(1, 1, 30, 32), torch.ones(1, 1, 30, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*\\(len\\(channels\\) - 1\\) = 4"):
        build(name, image_size=(30, 32), **SMALL[name])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_loss_decreases_on_a_tiny_batch(name):
    torch.manual_seed(0)
    model = build(name, **SMALL[name])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = _slices(b=4, n=24)
    floor = 0.0
    if name != "draem_net":  # BCE against a soft target cannot go below the target's binary entropy
        _, t = model.corrupt(x, torch.Generator().manual_seed(5))
        floor = float(F.binary_cross_entropy(t, t))
    losses = []
    for _ in range(20):
        loss = model.loss(x, torch.Generator().manual_seed(5))  # the same anomalies every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach().item() - floor)
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_loss_deterministic_under_a_seed(name):
    torch.manual_seed(0)
    model = build(name, **SMALL[name])
    x = _slices()
    a = model.loss(x, torch.Generator().manual_seed(1))
    b = model.loss(x, torch.Generator().manual_seed(1))
    c = model.loss(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    again = build(name, **SMALL[name])
    assert torch.equal(again.loss(x, torch.Generator().manual_seed(1)), a)


def test_draem_loss_is_reconstruction_plus_focal():
    from brainuad.scoring.ssim import ssim_map

    torch.manual_seed(0)
    model = build("draem_net", **SMALL["draem_net"], p_anomaly=1.0, anomaly={"gamma_range": [0.5, 0.5]})
    x = _slices(b=3)
    syn, mask = synthetic.draem_anomaly(x, x > 0, torch.Generator().manual_seed(3), p_anomaly=1.0,
                                        gamma_range=[0.5, 0.5])
    rec, logits = model(syn)
    p = torch.sigmoid(logits)
    t = mask.float()
    focal = (-(t * (1 - p) ** 2 * torch.log(p) + (1 - t) * p ** 2 * torch.log(1 - p))).mean()
    expected = F.mse_loss(rec, x) + 1 - ssim_map(rec.detach(), x, sigma=1.5, padding="mirror").mean() + focal
    assert torch.allclose(model.loss(x, torch.Generator().manual_seed(3)), expected, atol=1e-5)
    # the discriminative net sees the corrupted input and its reconstruction
    assert model.discriminative.inp[0].in_channels == 2


def test_binary_focal_loss_matches_monai():
    from monai.losses import FocalLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g) * 3
    target = (torch.rand(2, 1, 8, 8, generator=g) > 0.7).float()
    assert torch.allclose(binary_focal_loss(logits, target, 2.0), FocalLoss(gamma=2.0)(logits, target), atol=1e-6)
    assert torch.allclose(binary_focal_loss(logits, target, 0.0), F.binary_cross_entropy_with_logits(logits, target))


def test_ssim_loss_is_one_minus_the_scoring_ssim():
    from brainuad.scoring.ssim import ssim_map

    x = _slices(b=2)
    y = (x + 0.1 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    # the independent SSIM of brainuad.scoring (torch reflect = its "mirror" padding, same window and constants)
    assert float(ssim_loss(x, y)) == pytest.approx(1 - float(ssim_map(x, y, sigma=1.5, padding="mirror").mean()), abs=1e-5)
    y.requires_grad_(True)
    ssim_loss(x, y).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["pii", "fpi"])
def test_interpolation_loss_is_bce_against_alpha(name):
    torch.manual_seed(0)
    model = build(name, **SMALL[name])
    x = _slices(b=3)
    opts = SMALL[name].get("anomaly", {})
    syn, target = synthetic.make_anomaly(name, x, x > 0, torch.Generator().manual_seed(4), **opts)
    assert (target > 0).any() and float(target.max()) <= 1
    expected = F.binary_cross_entropy_with_logits(model(syn), target)
    assert torch.allclose(model.loss(x, torch.Generator().manual_seed(4)), expected)


def test_draem_p_anomaly_zero_gives_clean_targets():
    model = build("draem_net", **SMALL["draem_net"], p_anomaly=0.0)
    x = _slices(b=3)
    syn, mask = model.corrupt(x, torch.Generator().manual_seed(0))
    assert torch.equal(syn, x) and not mask.any()
