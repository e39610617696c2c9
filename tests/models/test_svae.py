"""SVAE (Behrendt et al. 2022): slice-wise 2D encoder/decoder, transformer over the slice sequence."""

import pytest
import torch

from brainuad.models import build

HP = dict(image_size=(6, 16, 16), channels=[4, 8], d_model=16, latent_dim=4, layers=1, heads=2)


def test_shapes_and_interface():
    torch.manual_seed(0)
    m = build("svae", **HP)
    assert m.input_dims == 3 and m.beta_kl == 0.001
    x = torch.rand(2, 1, 6, 16, 16)
    mu, logvar = m.posterior(x)
    assert mu.shape == logvar.shape == (2, 6, 4)
    rec = m.eval().reconstruct(x, samples=3, generator=torch.Generator().manual_seed(1))
    assert rec.shape == (3, 2, 1, 6, 16, 16) and torch.allclose(rec[0], m(x)) and not torch.allclose(rec[1], rec[2])
    with pytest.raises(ValueError, match="expects volumes of shape \\(B, 1, 6, 16, 16\\)"):
        m(torch.rand(2, 1, 5, 16, 16))


def test_slices_see_each_other_through_the_transformer_only():
    """Changing one slice changes the latents of the others (transformer); the decoder is slice-wise."""
    torch.manual_seed(0)
    m = build("svae", **HP).eval()
    x = torch.rand(1, 1, 6, 16, 16)
    y = x.clone()
    y[:, :, 0] = 1.0 - y[:, :, 0]
    mu_x, mu_y = m.posterior(x)[0], m.posterior(y)[0]
    assert not torch.allclose(mu_x[:, 3], mu_y[:, 3])  # other slices' latents move
    z = mu_x.clone()
    z2 = z.clone()
    z2[:, 0] += 1.0
    d1, d2 = m.decode(z), m.decode(z2)
    assert torch.equal(d1[:, :, 1:], d2[:, :, 1:]) and not torch.equal(d1[:, :, 0], d2[:, :, 0])


def test_loss_is_l1_plus_weighted_kl_and_seeded():
    torch.manual_seed(0)
    m = build("svae", **{**HP, "beta_kl": 0.5})
    m.eval()  # BatchNorm statistics fixed so the manual computation matches
    x = torch.rand(2, 1, 6, 16, 16)
    mu, logvar = m.posterior(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(4))
    rec = m.decode(mu + eps * (0.5 * logvar).exp())
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)).mean()
    assert torch.allclose(m.loss(x, torch.Generator().manual_seed(4)), (rec - x).abs().mean() + 0.5 * kl, atol=1e-6)
