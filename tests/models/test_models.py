import numpy as np
import pytest
import torch
from skimage.exposure import equalize_hist

from brainuad.catalog import LEARNING_FREE
from brainuad.models import _REGISTRY, available, build


def test_registry_lists_builtin_models_and_rejects_unknown():
    assert {"ae", "vae", "thresh"} <= set(available())
    with pytest.raises(KeyError, match="unknown model 'nope'.*ae"):
        build("nope")
    with pytest.raises(TypeError, match="model 'ae'"):
        build("ae", bogus=1)


def test_catalog_agrees_with_model_classes():
    learning_free = {name for name, cls in _REGISTRY.items() if not cls.trainable}
    assert learning_free == set(LEARNING_FREE)


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_autoencoder_shapes_and_loss(name):
    torch.manual_seed(0)
    model = build(name, image_size=(32, 48), channels=(4, 8, 8), latent_dim=16)
    assert model.input_dims == 2
    x = torch.rand(5, 1, 32, 48)
    loss = model.loss(x)
    assert loss.dim() == 0 and loss > 0
    rec = model.eval().reconstruct(x, torch.ones_like(x, dtype=torch.bool), samples=3,
                                   generator=torch.Generator().manual_seed(1))
    assert rec.shape == (3, 5, 1, 32, 48)


def test_image_size_must_fit_the_encoder():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*len\\(channels\\) = 8"):
        build("ae", image_size=(36, 36), channels=(4, 8, 8))


def test_ae_is_deterministic_and_vae_samples_differ():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16)
    ae = build("ae", image_size=(16, 16), channels=(4, 8), latent_dim=4).eval()
    r = ae.reconstruct(x, samples=2)
    assert torch.equal(r[0], r[1])
    vae = build("vae", image_size=(16, 16), channels=(4, 8), latent_dim=4).eval()
    r = vae.reconstruct(x, samples=3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(r[0], vae(x))  # first sample decodes the posterior mean
    assert not torch.allclose(r[1], r[2])


def test_vae_loss_is_l1_plus_weighted_kl():
    torch.manual_seed(0)
    vae = build("vae", image_size=(16, 16), channels=(4, 8), latent_dim=4, beta_kl=0.5).eval()
    x = torch.rand(3, 1, 16, 16)
    mu, logvar = vae.posterior(x)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    eps = torch.randn(mu.shape, generator=g1)
    rec = vae.decode(mu + eps * (0.5 * logvar).exp())
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
    expected = (rec - x).abs().mean() + 0.5 * kl
    assert torch.allclose(vae.loss(x, generator=g2), expected, atol=1e-6)


def test_thresh_map_is_masked_histogram_equalisation():
    rng = np.random.default_rng(0)
    vol = rng.random((1, 1, 4, 8, 8)).astype(np.float32)
    mask = np.zeros_like(vol, dtype=bool)
    mask[..., 2:6, 2:6] = True
    model = build("thresh")
    assert not model.trainable and model.produces == "map"
    out = model.anomaly_map(torch.from_numpy(vol), torch.from_numpy(mask)).numpy()
    expected = np.where(mask[0, 0], equalize_hist(vol[0, 0], mask=mask[0, 0]), 0)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)
    assert (out[~mask] == 0).all()
    # brighter voxels inside the brain get higher scores (monotone map)
    inside = vol[mask]
    assert np.all(np.diff(out[mask][np.argsort(inside)]) >= 0)
