"""P8.1's 2D / 3D VAEs (``vae2d_p81``, ``vae3d``): shapes, shared layout, loss against the clean target, seeds."""

import pytest
import torch
import torch.nn as nn

from brainuad.models import build


def _layers(model: nn.Module) -> list[tuple[str, tuple]]:
    """(kind, widths) of every parametrised layer, with the dimensionality stripped from the class name."""
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            out.append((type(m).__name__[:-2], (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])))
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            out.append(("BatchNorm", (m.num_features,)))
        elif isinstance(m, nn.Linear):
            out.append(("Linear", ()))
    return out


def test_2d_and_3d_vae_share_layer_count_and_channel_widths():
    v2 = build("vae2d_p81", image_size=(64, 64))
    v3 = build("vae3d", image_size=(64, 64, 64))
    assert _layers(v2) == _layers(v3)
    # 4 strided convs + 4 transposed convs + 1x1 head, 8 BatchNorms, 2 dense layers
    kinds = [k for k, _ in _layers(v2)]
    assert kinds.count("Conv") == 5 and kinds.count("ConvTranspose") == 4 and kinds.count("BatchNorm") == 8
    assert [w[1] for k, w in _layers(v3) if k == "Conv"] == [32, 64, 128, 256, 1]
    assert not any(isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) for m in v3.modules())
    assert v2.latent_dim == 128 and v3.latent_dim == 512  # thesis defaults
    assert v2.input_dims == 2 and v3.input_dims == 3


def test_first_convolution_halves_the_input_and_output_keeps_the_shape():
    v3 = build("vae3d", image_size=(32, 32, 16), channels=(4, 8, 8, 8), latent_dim=8)
    x = torch.rand(2, 1, 32, 32, 16)
    assert v3.encoder[0](x).shape == (2, 4, 16, 16, 8)
    assert v3.eval()(x).shape == x.shape
    rec = v3.reconstruct(x, samples=3, generator=torch.Generator().manual_seed(0))
    assert rec.shape == (3, 2, 1, 32, 32, 16)
    assert torch.allclose(rec[0], v3(x)) and not torch.allclose(rec[1], rec[2])
    v2 = build("vae2d_p81", image_size=(32, 16), channels=(4, 8), latent_dim=8).eval()
    assert v2(torch.rand(5, 1, 32, 16)).shape == (5, 1, 32, 16)


def test_shape_errors_name_the_expected_shape():
    with pytest.raises(ValueError, match="must have 3 entries"):
        build("vae3d", image_size=(64, 64))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(channels\\) = 16"):
        build("vae3d", image_size=(64, 64, 40))
    v3 = build("vae3d", image_size=(16, 16, 16), channels=(4, 8), latent_dim=4)
    with pytest.raises(ValueError, match="expects inputs of shape \\(B, 1, 16, 16, 16\\)"):
        v3(torch.rand(2, 1, 16, 16))


@pytest.mark.parametrize("name,size", [("vae2d_p81", (16, 16)), ("vae3d", (8, 16, 16))])
def test_loss_compares_the_output_with_the_clean_target(name, size):
    torch.manual_seed(0)
    model = build(name, image_size=size, channels=(4, 8), latent_dim=4, beta_kl=0.25)
    clean = torch.rand(3, 1, *size)
    erased = clean.clone()
    erased[..., : size[-1] // 2] = 0
    mu, logvar = model.posterior(erased)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    rec = model.decode(mu + eps * (0.5 * logvar).exp())
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
    expected = (rec - clean).abs().mean() + 0.25 * kl
    got = model.loss(erased, generator=torch.Generator().manual_seed(5), target=clean)
    assert torch.allclose(got, expected, atol=1e-6)
    # without a target the input is the target
    self_target = model.loss(erased, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(self_target, (rec - erased).abs().mean() + 0.25 * kl, atol=1e-6)


@pytest.mark.parametrize("name,size", [("vae2d_p81", (16, 16)), ("vae3d", (8, 16, 16))])
def test_same_seed_same_model_and_loss(name, size):
    x = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(1))
    out = []
    for _ in range(2):
        torch.manual_seed(11)
        model = build(name, image_size=size, channels=(4, 8), latent_dim=4)
        out.append((model.loss(x, generator=torch.Generator().manual_seed(2)), model.eval()(x)))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    torch.manual_seed(12)
    other = build(name, image_size=size, channels=(4, 8), latent_dim=4).eval()
    assert not torch.equal(other(x), out[0][1])
