import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from brainuad.training import TrainSettings
from brainuad.training.augment import Augmenter, from_config, gaussian_blur, ghosting

ONLY = {k: dict(blur_p=0.0, bias_p=0.0, gamma_p=0.0, ghost_p=0.0) | {k: 1.0}
        for k in ("blur_p", "bias_p", "gamma_p", "ghost_p")}


def _phantom(b=8, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, 1, n, n)
    x[:, :, n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 0.6
    x[:, :, n // 2 - 2 : n // 2 + 2, :] = 0.9
    return (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


def _hf_energy(x):
    return float((x[..., 1:, :] - x[..., :-1, :]).pow(2).sum() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum())


def test_zero_probability_is_identity_and_input_untouched():
    x = _phantom()
    before = x.clone()
    y = Augmenter(0, 0, 0, 0)(x, _gen())
    assert torch.equal(y, x) and torch.equal(x, before)
    assert from_config(None) is None and from_config({}) is None
    assert from_config({"enabled": False, "blur_p": 1}) is None
    assert from_config({"blur_p": 0, "bias_p": 0, "gamma_p": 0, "ghost_p": 0}) is None
    assert isinstance(from_config({"gamma_p": 1.0}), Augmenter)
    with pytest.raises(ValueError):
        from_config({"blurr_p": 0.5})


def test_gamma_is_a_monotone_power_fixing_0_and_1():
    x = torch.linspace(0, 1, 64).repeat(4, 1, 64, 1)
    y = Augmenter(**ONLY["gamma_p"])(x, _gen(3))
    assert torch.equal(y[..., 0], x[..., 0]) and torch.allclose(y[..., -1], x[..., -1])
    assert (torch.diff(y[:, 0, 0, :], dim=-1) > 0).all()
    # a single exponent per sample, with log(gamma) in [-0.3, 0.3]
    inner = slice(1, -1)
    gammas = torch.log(y[:, 0, 0, inner]) / torch.log(x[:, 0, 0, inner])
    assert torch.allclose(gammas, gammas[:, :1].expand_as(gammas), atol=1e-3)
    assert (gammas[:, 0].log().abs() <= 0.3 + 1e-4).all() and gammas[:, 0].std() > 0


def test_blur_lowers_high_frequency_energy_and_matches_scipy():
    x = _phantom(seed=2)
    y = Augmenter(**ONLY["blur_p"])(x, _gen(4))
    for i in range(len(x)):
        assert _hf_energy(y[i]) < _hf_energy(x[i])
    assert abs(float(y.mean()) - float(x.mean())) < 1e-3  # mass preserved (reflect boundary)
    sh, sw = torch.tensor([0.0, 0.8]), torch.tensor([1.7, 0.3])
    ours = gaussian_blur(x[:2].double(), sh, sw)
    for i in range(2):
        ref = ndi.gaussian_filter(x[i, 0].double().numpy(), (float(sh[i]), float(sw[i])))
        np.testing.assert_allclose(ours[i, 0].numpy(), ref, atol=1e-12)


def test_bias_field_is_smooth_multiplicative_and_positive():
    x = torch.full((6, 1, 32, 32), 0.1)
    aug = Augmenter(**ONLY["bias_p"], bias_coefficient=0.05)  # |log field| <= 20 * 0.05: no clipping
    y = aug(x, _gen(5))
    field = y / x
    assert (field > 0).all() and not torch.allclose(field, torch.ones_like(field))
    # smooth: neighbouring pixels differ far less than the field's overall spread
    step = (field[..., 1:, :] - field[..., :-1, :]).abs().max()
    assert step < 0.2 * (field.amax(dim=(2, 3)) - field.amin(dim=(2, 3))).max()
    # multiplicative: same random state on an image twice as bright gives twice the output
    assert torch.allclose(aug(2 * x, _gen(5)), 2 * y, atol=1e-6)
    assert not torch.allclose(field[0], field[1])  # one field per sample


def test_ghosting_equals_shifted_copies_along_the_phase_encode_axis():
    n, g, s = 40, 5, 0.8
    x = torch.rand(2, 1, n, n, generator=_gen(0))
    y = ghosting(x, torch.tensor([g, g]), torch.tensor([s, s]), torch.tensor([0, 1]), restore=0.0)
    for i, dim in ((0, 2), (1, 3)):
        xi = x[i : i + 1].double()
        copies = sum(torch.roll(xi, m * n // g, dims=dim) for m in range(g)) / g
        # k-space lines f = 0 mod g scaled by (1 - s) <=> subtract s * mean of g shifted copies;
        # the restored centre line (f = 0) adds back s * the mean along that axis
        expected = xi - s * copies + s * xi.mean(dim=dim, keepdim=True)
        torch.testing.assert_close(y[i : i + 1].double(), expected, atol=1e-6, rtol=0)


def test_ghosting_in_the_augmenter_acts_along_one_axis_only():
    n = 40
    x = torch.full((4, 1, n, n), 0.3)
    x[:, :, 17:23, 17:23] = 0.8  # a bright square on a grey background
    y = Augmenter(**ONLY["ghost_p"], ghost_restore=0.0)(x, _gen(0))
    for i in range(4):
        d = (y[i, 0] - x[i, 0]).abs()
        outside = d.clone()
        outside[17:23, 17:23] = 0
        assert float(outside.sum()) > 0.5  # ghosts appear outside the object
        rows_clean = float(d[:17].sum() + d[23:].sum()) < 1e-4  # ghosting along W stays in rows 17..22
        cols_clean = float(d[:, :17].sum() + d[:, 23:].sum()) < 1e-4  # along H stays in those columns
        assert rows_clean != cols_clean


def test_deterministic_under_the_generator_and_values_in_range():
    x = _phantom(16, seed=7)
    aug = Augmenter(1.0, 1.0, 1.0, 1.0)
    a, b = aug(x, _gen(11)), aug(x, _gen(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, _gen(12)))
    assert a.min() >= 0 and a.max() <= 1 and a.dtype == x.dtype and a.shape == x.shape
    # the generator advances by a fixed amount whatever the probabilities
    g1, g2 = _gen(3), _gen(3)
    Augmenter(0, 0, 0, 0)(x, g1)
    Augmenter(1, 1, 1, 1)(x, g2)
    assert torch.equal(g1.get_state(), g2.get_state())
    with pytest.raises(ValueError):
        aug(torch.zeros(2, 1, 4, 8, 8), _gen())


def test_training_loop_with_augmentation_resumes_bit_identically(monkeypatch, resumed_equals_uninterrupted):
    rng = np.random.default_rng(0)
    vols = np.zeros((6, 4, 16, 16), np.float32)
    vols[:, :, 4:12, 4:12] = 0.8
    vols = (vols + 0.05 * rng.random(vols.shape)).astype(np.float16)
    hp = {"image_size": [16, 16], "channels": [4, 8], "latent_dim": 8}
    aug = {"blur_p": 0.25, "bias_p": 0.25, "gamma_p": 0.5, "ghost_p": 0.5}
    s = TrainSettings(max_steps=6, batch_size=4, lr=1e-3, val_every=3, seed=5, checkpoint_every_s=1e9, augment=aug)
    calls, original = [], Augmenter.__call__

    def spy(self, batch, generator=None):
        calls.append(tuple(batch.shape))
        return original(self, batch, generator)

    monkeypatch.setattr(Augmenter, "__call__", spy)
    resumed_equals_uninterrupted("ae", hp, vols[:4], vols[4:], s)
    assert calls[:6] == [(4, 1, 16, 16)] * 6  # every training batch of the first run was augmented
