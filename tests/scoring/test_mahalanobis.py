"""Mahalanobis scores: Woodbury vs dense covariance, diagonal MHD, post-processing order, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from skimage.metrics import structural_similarity

from brainuad.scoring import mahalanobis as mh
from brainuad.scoring import score
from brainuad.scoring.mahalanobis import TERMS, _mhd_full_dense, mhd_full_woodbury

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
RAW = dict(minmax=False, smooth_sigma=None, combine_ssim=False)  # switches off: the raw MHD


def _units(n_rec, g=5, p=150, seed=0):
    """Random units (G, P) with N reconstructions, masks incl. a one-pixel and an empty unit."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(g, p, generator=gen, dtype=torch.float64)
    r = base + 0.05 * torch.randn(n_rec, g, p, generator=gen, dtype=torch.float64)
    x = base + 0.05 * torch.randn(g, p, generator=gen, dtype=torch.float64)
    x[0, :10] += 0.5  # an "anomaly"
    m = torch.rand(g, p, generator=gen) > 0.3
    m[1] = False  # no brain
    m[2] = False
    m[2, 17] = True  # a single brain pixel
    m[3] = True  # all brain
    return x, r, m


def _volume_inputs(shape=(2, 1, 8, 14, 12), n_rec=6, seed=1):
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random(shape), (0, 0) + (1,) * (len(shape) - 2))
    rec = img[None] + 0.04 * rng.standard_normal((n_rec, *shape))
    img = img + 0.04 * rng.standard_normal(shape)
    img[..., 4:7, 5:8] += 0.3
    mask = np.zeros(shape, dtype=bool)
    mask[..., 2:-2, 2:-3] = True
    if len(shape) == 5:
        mask[0, 0, 0] = False  # a slice without brain
        mask[0, 0, 1] = False
        mask[0, 0, 1, 5, 5] = True  # a slice with one brain pixel
    return img, rec, mask


@pytest.mark.parametrize("n_rec", [2, 5, 10])
@pytest.mark.parametrize("lam", [1e-5, 1e-2, 1.0])
@pytest.mark.parametrize("term", TERMS)
def test_woodbury_equals_dense(n_rec, lam, term):
    x, r, m = _units(n_rec, seed=n_rec)
    fast = mhd_full_woodbury(x, r, m, lam, term)
    dense = _mhd_full_dense(x, r, m, lam, term)
    scale = dense.abs().max()
    assert scale > 0
    torch.testing.assert_close(fast, dense, atol=1e-9 * scale, rtol=0)
    assert torch.all(fast[~m] == 0)
    assert torch.all(fast[1] == 0)  # no brain -> zeros


def test_negative_terms_exist_and_are_zeroed():
    """The public code's sqrt gives NaN for negative terms, which it sets to 0."""
    x, r, m = _units(10)
    quad = mhd_full_woodbury(x, r, m, 1e-2, "quad")
    assert (quad < 0).any()  # the case exercises the NaN path
    sq = mhd_full_woodbury(x, r, m, 1e-2, "sqrt_nan0")
    assert torch.all(sq[quad < 0] == 0)
    torch.testing.assert_close(sq[quad >= 0], quad[quad >= 0].sqrt())
    torch.testing.assert_close(mhd_full_woodbury(x, r, m, 1e-2, "abs_sqrt"), quad.abs().sqrt())


def test_whitened_squares_sum_to_quadratic_form():
    x, r, m = _units(10, seed=3)
    quad = mhd_full_woodbury(x, r, m, 1e-2, "quad")
    white = mhd_full_woodbury(x, r, m, 1e-2, "whitened")
    torch.testing.assert_close((white**2).sum(1), quad.sum(1), rtol=1e-9, atol=1e-12)


def test_one_pixel_mask_is_standardised_residual():
    x, r, m = _units(7, seed=4)
    lam = 1e-2
    i = 17  # the single brain pixel of unit 2
    d = x[2, i] - r[:, 2, i].mean()
    expected = d.abs() / torch.sqrt(r[:, 2, i].var(unbiased=True) + lam)
    for term in ("sqrt_nan0", "abs_sqrt", "whitened"):
        out = mhd_full_woodbury(x, r, m, lam, term)
        torch.testing.assert_close(out[2, i], expected)
        assert torch.count_nonzero(out[2]) == 1


@pytest.mark.parametrize("term", TERMS)
def test_registered_mhd_full_raw_equals_dense_per_slice(term):
    img, rec, mask = _volume_inputs()
    out = score("mhd_full", img, rec, mask, term=term, **RAW)
    # dense reference, slice by slice, computed independently from float32-cast inputs
    f32 = lambda a: torch.as_tensor(a.astype(np.float32))  # noqa: E731
    h, w = img.shape[-2:]
    x, r, m = f32(img).reshape(-1, h * w), f32(rec).reshape(rec.shape[0], -1, h * w), torch.as_tensor(mask).reshape(-1, h * w)
    ref = _mhd_full_dense(x, r, m, 1e-2, term).reshape(img.shape).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5 * np.abs(ref).max(), rtol=1e-5)
    assert np.all(out[0, 0, 0] == 0)  # slice without brain
    assert np.count_nonzero(out[0, 0, 1]) <= 1  # one-pixel slice


def test_registered_mhd_full_3d_equals_dense():
    img, rec, mask = _volume_inputs(shape=(1, 1, 6, 9, 8), n_rec=10)
    out = score("mhd_full", img, rec, mask, dims=3, term="whitened", **RAW)
    x = torch.as_tensor(img.astype(np.float32)).reshape(1, -1)
    r = torch.as_tensor(rec.astype(np.float32)).reshape(10, 1, -1)
    ref = _mhd_full_dense(x, r, torch.as_tensor(mask).reshape(1, -1), 1e-2, "whitened").reshape(img.shape).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5 * ref.max(), rtol=1e-5)
    # a volume-wide covariance differs from per-slice covariances
    per_slice = score("mhd_full", img, rec, mask, dims=2, term="whitened", **RAW)
    assert np.abs(per_slice - out).max() > 1e-3


def test_mhd_diag_is_standardised_residual():
    img, rec, mask = _volume_inputs()
    lam = 0.05
    out = score("mhd_diag", img, rec, mask, lam=lam, **RAW)
    img32, rec32 = img.astype(np.float32).astype(np.float64), rec.astype(np.float32).astype(np.float64)
    expected = np.abs(img32 - rec32.mean(0)) / np.sqrt(rec32.var(0, ddof=1) + lam) * mask
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mhd_diag", "mhd_full"])
def test_postprocessing_order_matches_public_pipeline(name):
    """raw -> per-volume min-max -> 3D Gaussian(sigma=1, scipy defaults) -> * (1 - 3D SSIM(x, mu)) * mask."""
    img, rec, mask = _volume_inputs(shape=(2, 1, 10, 14, 12))
    raw = score(name, img, rec, mask, **RAW).astype(np.float64)
    out = score(name, img, rec, mask)  # defaults: the full pipeline
    mu = rec.astype(np.float32).mean(0).astype(np.float64)
    img32 = img.astype(np.float32).astype(np.float64)
    for b in range(img.shape[0]):
        v = raw[b, 0]
        v = (v - v.min()) / (v.max() - v.min())
        v = ndi.gaussian_filter(v, 1.0)
        s = structural_similarity(img32[b, 0], mu[b, 0], data_range=1.0, gaussian_weights=True, sigma=1.0,
                                  use_sample_covariance=False, full=True)[1]  # the default conventions
        expected = v * (1 - s) * mask[b, 0]
        np.testing.assert_allclose(out[b, 0], expected, atol=1e-5)


@pytest.mark.parametrize("name", ["mhd_diag", "mhd_full"])
def test_shapes_and_zero_outside_mask_2d_and_3d(name):
    img, rec, mask = _volume_inputs()
    out3 = score(name, img, rec, mask)
    assert out3.shape == img.shape and out3.dtype == np.float32
    assert np.all(out3[~mask] == 0) and np.isfinite(out3).all() and out3.max() > 0
    img2, rec2, mask2 = _volume_inputs(shape=(4, 1, 14, 12))
    out2 = score(name, img2, rec2, mask2)
    assert out2.shape == img2.shape and np.all(out2[~mask2] == 0) and out2.max() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["mhd_diag", "mhd_full"])
def test_float16_and_device(name, device):
    img, rec, mask = _volume_inputs()
    ref = score(name, img, rec, mask, term="whitened") if name == "mhd_full" else score(name, img, rec, mask)
    kw = {"term": "whitened"} if name == "mhd_full" else {}
    t = lambda a: torch.as_tensor(a).to(device)  # noqa: E731
    out = score(name, t(img).half(), t(rec).half(), t(mask), **kw)
    assert out.device.type == device
    np.testing.assert_allclose(out.cpu().numpy(), ref, atol=2e-2)
    out16 = getattr(mh, name)(t(img).half(), t(rec).half(), t(mask), **kw)
    assert out16.dtype == torch.float16 and torch.isfinite(out16).all()


def test_validation():
    img, rec, mask = _volume_inputs()
    with pytest.raises(ValueError):
        score("mhd_full", img, rec[:1], mask)
    with pytest.raises(ValueError):
        score("mhd_full", img, rec, mask, term="bogus")
    with pytest.raises(ValueError):
        score("mhd_full", img[:, :, 0], rec[:, :, :, 0], mask[:, :, 0], dims=3)


@pytest.mark.parametrize("name", ["mhd_diag", "mhd_full"])
def test_ssim_factor_follows_the_conventions(name):
    """The (1 - SSIM) factor uses ssim_covariance / ssim_padding (config `conventions`); the MHD part does not."""
    from brainuad.scoring.ssim import ssim_map

    img, rec, mask = _volume_inputs(shape=(1, 1, 10, 14, 12))
    no_ssim = dict(combine_ssim=False)
    mu = rec.astype(np.float32).mean(0)
    outs = {}
    for cov, pad in (("population", "mirror"), ("sample", "reflect")):
        out = score(name, img, rec, mask, ssim_covariance=cov, ssim_padding=pad)
        base = score(name, img, rec, mask, ssim_covariance=cov, ssim_padding=pad, **no_ssim)
        s = ssim_map(img.astype(np.float32), mu, 1.0, 1.0, dims=3, covariance=cov, padding=pad)
        np.testing.assert_allclose(out, base * (1 - s) * mask, atol=1e-6)
        outs[cov] = (out, base)
    np.testing.assert_array_equal(outs["population"][1], outs["sample"][1])  # the MHD part is the same
    assert np.abs(outs["population"][0] - outs["sample"][0]).max() > 1e-4
