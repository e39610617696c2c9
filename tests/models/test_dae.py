"""DAE (Kascenas et al. 2022): coarse noise, foreground-only corruption, loss against the clean slice, no test noise."""

import pytest
import torch
import torch.nn.functional as F

from brainuad.models import build
from brainuad.models.denoising_ae import coarse_noise


def test_coarse_noise_has_the_std_and_is_smooth():
    g = torch.Generator().manual_seed(0)
    n = coarse_noise((64, 1, 64, 64), 8, 0.2, g, torch.device("cpu"))
    assert n.shape == (64, 1, 64, 64)
    # bilinear upsampling keeps the grid values' std only partly: the std lies below 0.2 and well above 0
    assert 0.1 < float(n.std()) < 0.2 and abs(float(n.mean())) < 0.01
    # neighbouring pixels are strongly correlated (8 px per grid cell), unlike white noise
    corr = torch.corrcoef(torch.stack([n[..., :-1].flatten(), n[..., 1:].flatten()]))[0, 1]
    assert corr > 0.9
    # same seed, same noise
    assert torch.equal(n, coarse_noise((64, 1, 64, 64), 8, 0.2, torch.Generator().manual_seed(0), torch.device("cpu")))


def test_the_rolled_noise_is_the_upsampled_grid_shifted():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    n = coarse_noise((2, 1, 32, 32), 4, 1.0, g1, torch.device("cpu"))
    grid = torch.randn((2, 1, 4, 4), generator=g2)
    up = F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)
    dy, dx = (int(v) for v in torch.randint(0, 32, (2,), generator=g2))
    assert torch.allclose(n, torch.roll(up, shifts=(dy, dx), dims=(-2, -1)))


def test_corruption_only_on_the_foreground_and_loss_against_the_clean_input():
    torch.manual_seed(0)
    dae = build("dae", image_size=(16, 16), channels=[8, 16], noise_res=4)
    x = torch.zeros(3, 1, 16, 16)
    x[..., 4:12, 4:12] = 0.5
    noisy = dae.corrupt(x, torch.Generator().manual_seed(1))
    assert torch.equal(noisy[x == 0], x[x == 0]) and not torch.equal(noisy[x > 0], x[x > 0])
    expected = F.mse_loss(dae(dae.corrupt(x, torch.Generator().manual_seed(2))), x)
    assert torch.allclose(dae.loss(x, torch.Generator().manual_seed(2)), expected)
    l1 = build("dae", image_size=(16, 16), channels=[8, 16], noise_res=4, loss="l1")
    l1.load_state_dict(dae.state_dict())
    assert torch.allclose(l1.loss(x, torch.Generator().manual_seed(2)),
                          F.l1_loss(dae(dae.corrupt(x, torch.Generator().manual_seed(2))), x))


def test_reconstruction_is_noise_free_and_shaped():
    dae = build("dae", image_size=(32, 16), channels=[8, 16, 32], noise_res=4).eval()
    x = torch.rand(2, 1, 32, 16)
    rec = dae.reconstruct(x, samples=2, generator=torch.Generator().manual_seed(0))
    assert rec.shape == (2, 2, 1, 32, 16) and torch.equal(rec[0], rec[1]) and torch.allclose(rec[0], dae(x))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*\\(len\\(channels\\) - 1\\) = 4"):
        build("dae", image_size=(30, 16), channels=[8, 16, 32])
    with pytest.raises(ValueError, match="loss must be"):
        build("dae", image_size=(16, 16), channels=[8, 16], loss="l3")
