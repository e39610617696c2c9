"""SSIM, SSIM-ens and Gaussian filtering against scikit-image / scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from skimage.metrics import structural_similarity

from brainuad.scoring import score
from brainuad.scoring.ssim import (
    DEFAULT_SIGMAS,
    gaussian_filter,
    gaussian_filter_multi,
    gaussian_radius,
    ssim_map,
    scale_ensemble,
    ssim_maps,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _sk_ssim(a, b, sigma, data_range=1.0, sample=False):
    """scikit-image's full SSIM map with the settings the spec fixes (reflect boundary; population
    covariance = the library default, or ``sample=True``: N / (N - 1))."""
    return structural_similarity(
        a, b, data_range=data_range, gaussian_weights=True, sigma=sigma, use_sample_covariance=sample, full=True
    )[1]


def _pair(shape, seed=0, noise=0.15):
    rng = np.random.default_rng(seed)
    a = ndi.gaussian_filter(rng.random(shape), 1.0)  # some structure
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(a + noise * rng.standard_normal(shape), 0, 1)
    return a, b


def _volume_inputs(shape=(2, 1, 14, 20, 18), n_rec=4, seed=1):
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random(shape), (0, 0) + (1,) * (len(shape) - 2))
    rec = img[None] + 0.05 * rng.standard_normal((n_rec, *shape))
    mask = np.zeros(shape, dtype=bool)
    mask[..., 3:-3, 4:-4, 4:-4] = True
    return img, rec, mask


def test_kernel_size_formula():
    assert [2 * gaussian_radius(s) + 1 for s in DEFAULT_SIGMAS] == [3, 5, 5, 7, 9, 11, 11, 13]
    assert 2 * gaussian_radius(1.0) + 1 == 9


@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.0, 1.7])
@pytest.mark.parametrize("data_range", [1.0, 2.5])
def test_ssim_2d_matches_skimage(sigma, data_range):
    a, b = _pair((41, 37), seed=3)
    out = ssim_map(a, b, sigma=sigma, data_range=data_range, dims=2)
    assert out.dtype == np.float64 and out.shape == a.shape
    np.testing.assert_allclose(out, _sk_ssim(a, b, sigma, data_range), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_ssim_3d_matches_skimage(sigma):
    a, b = _pair((15, 19, 17), seed=4)
    out = ssim_map(a, b, sigma=sigma, data_range=1.0, dims=3)
    np.testing.assert_allclose(out, _sk_ssim(a, b, sigma), atol=1e-6, rtol=0)


def test_ssim_data_range_auto_is_max_range_of_pair():
    a, b = _pair((30, 30), seed=5)
    b = 1.7 * b
    rng = max(np.ptp(a), np.ptp(b))
    np.testing.assert_allclose(ssim_map(a, b, 1.0, "auto", 2), _sk_ssim(a, b, 1.0, rng), atol=1e-6, rtol=0)


def test_ssim_batched_slices_and_volumes():
    """Leading axes are a batch: dims=2 on (B, 1, D, H, W) is per-slice SSIM, dims=3 per volume."""
    rng = np.random.default_rng(6)
    x = rng.random((2, 1, 12, 16, 20))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    out2 = ssim_map(x, y, 1.0, 1.0, dims=2)
    out3 = ssim_map(x, y, 1.0, 1.0, dims=3)
    for bi in range(2):
        np.testing.assert_allclose(out3[bi, 0], _sk_ssim(x[bi, 0], y[bi, 0], 1.0), atol=1e-6, rtol=0)
        for di in (0, 5, 11):
            np.testing.assert_allclose(out2[bi, 0, di], _sk_ssim(x[bi, 0, di], y[bi, 0, di], 1.0), atol=1e-6, rtol=0)


def test_ssim_identical_images_is_one():
    a, _ = _pair((20, 20))
    np.testing.assert_allclose(ssim_map(a, a, 1.0, 1.0, 2), 1.0, atol=1e-12)


@pytest.mark.parametrize("truncate", [3.5, 4.0])
def test_gaussian_filter_matches_scipy(truncate):
    rng = np.random.default_rng(7)
    x = rng.random((3, 11, 13, 9))
    out = gaussian_filter(torch.as_tensor(x), 1.3, dims=3, truncate=truncate).numpy()
    for i in range(3):
        np.testing.assert_allclose(out[i], ndi.gaussian_filter(x[i], 1.3, truncate=truncate, mode="reflect"), atol=1e-12)
    multi = gaussian_filter_multi(torch.as_tensor(x), DEFAULT_SIGMAS, dims=2).numpy()
    for k, s in enumerate(DEFAULT_SIGMAS):
        ref = ndi.gaussian_filter(x, (0, 0, s, s), truncate=3.5, mode="reflect")
        np.testing.assert_allclose(multi[k], ref, atol=1e-12)


def test_gaussian_filter_radius_larger_than_axis():
    """Repeated reflection like scipy when the window is longer than the axis."""
    x = np.random.default_rng(8).random((5, 4))
    out = gaussian_filter(torch.as_tensor(x), 2.0, dims=2).numpy()
    np.testing.assert_allclose(out, ndi.gaussian_filter(x, 2.0, mode="reflect"), atol=1e-12)


def test_ssim_ens_one_pass_equals_per_sigma():
    a, b = _pair((2, 1, 24, 28), seed=9)
    ens, w = scale_ensemble(ssim_maps(torch.as_tensor(a), torch.as_tensor(b), DEFAULT_SIGMAS, 1.0, dims=2))
    per = np.stack([_sk_ssim(a[i, 0], b[i, 0], s) for s in DEFAULT_SIGMAS for i in range(2)])
    per = per.reshape(len(DEFAULT_SIGMAS), 2, 1, 24, 28)
    w_ref = np.exp(-per) / np.exp(-per).sum(0)
    np.testing.assert_allclose(w.numpy(), w_ref, atol=1e-6)
    np.testing.assert_allclose(ens.numpy(), (w_ref * per).sum(0), atol=1e-6)
    np.testing.assert_allclose(w.sum(0).numpy(), 1.0, atol=1e-12)
    assert w.shape == (8, 2, 1, 24, 28) and (w > 0).all()
    # the registered score: 1 - ensembled SSIM inside the mask, zero outside
    mask = np.ones_like(a)
    mask[:, :, :3] = 0
    amap = score("ssim_ens", a.astype(np.float32), b[None].astype(np.float32), mask)
    np.testing.assert_allclose(amap, (1 - (w_ref * per).sum(0)) * mask, atol=1e-4)


def test_scale_ensemble_by_hand():
    s = torch.tensor([[0.2, 1.0], [0.8, 1.0]], dtype=torch.float64)  # (K=2 scales, 2 pixels)
    ens, w = scale_ensemble(s)
    w0 = np.exp(-0.2) / (np.exp(-0.2) + np.exp(-0.8))  # softmax(-s) of the first pixel
    np.testing.assert_allclose(w.numpy(), [[w0, 0.5], [1 - w0, 0.5]], atol=1e-12)
    np.testing.assert_allclose(ens.numpy(), [0.2 * w0 + 0.8 * (1 - w0), 1.0], atol=1e-12)


def test_ssim_ens_single_sigma_reduces_to_ssim():
    a, b = _pair((25, 31), seed=10)
    ens, w = scale_ensemble(ssim_maps(torch.as_tensor(a), torch.as_tensor(b), [1.1], 1.0, dims=2))
    np.testing.assert_allclose(w.numpy(), 1.0)
    np.testing.assert_allclose(ens.numpy(), _sk_ssim(a, b, 1.1), atol=1e-6)


def test_registered_ssim_ens_single_sigma_equals_ssim():
    img, rec, mask = _volume_inputs()
    np.testing.assert_allclose(
        score("ssim_ens", img, rec, mask, sigmas=[0.9]), score("ssim", img, rec, mask, sigma=0.9), atol=1e-6
    )


@pytest.mark.parametrize("name", ["ssim", "mean_ssim", "ssim_ens"])
def test_registered_shapes_mask_and_values(name):
    img, rec, mask = _volume_inputs()
    mean = rec.mean(0)
    # volumes: 3D SSIM per volume by default
    out3 = score(name, img, rec, mask)
    assert isinstance(out3, np.ndarray) and out3.shape == img.shape and out3.dtype == np.float32
    assert np.all(out3[~mask] == 0)
    # slices: (B*D, 1, H, W) -> 2D SSIM per slice
    sl = lambda a: a.transpose(0, 2, 1, 3, 4).reshape(-1, 1, *a.shape[-2:])  # noqa: E731
    out2 = score(name, sl(img), np.stack([sl(r) for r in rec]), sl(mask))
    assert out2.shape == (img.shape[0] * img.shape[2], 1, *img.shape[-2:])
    assert np.all(out2[~sl(mask)] == 0)
    # same as requesting per-slice SSIM on the volume
    out_d2 = score(name, img, rec, mask, dims=2)
    np.testing.assert_allclose(sl(out_d2), out2, atol=1e-6)
    if name != "ssim_ens":
        ref3 = (1 - _sk_ssim(img[1, 0], mean[1, 0].astype(np.float32).astype(np.float64), 1.0)) * mask[1, 0]
        np.testing.assert_allclose(out3[1, 0], ref3, atol=2e-4)
        ref2 = (1 - _sk_ssim(img[0, 0, 7], mean[0, 0, 7].astype(np.float32).astype(np.float64), 1.0)) * mask[0, 0, 7]
        np.testing.assert_allclose(out_d2[0, 0, 7], ref2, atol=2e-4)


def test_registered_dims3_on_slices_raises():
    img, rec, mask = _volume_inputs(shape=(3, 1, 16, 16))
    with pytest.raises(ValueError):
        score("ssim", img, rec, mask, dims=3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["ssim", "mean_ssim", "ssim_ens"])
def test_float16_and_device(name, device):
    img, rec, mask = _volume_inputs()
    ref = score(name, img, rec, mask)
    t = lambda a: torch.as_tensor(a).to(device)  # noqa: E731
    out = score(name, t(img).half(), t(rec).half(), t(mask))
    assert out.device.type == device and out.dtype == torch.float32  # the registry upcasts
    fn = __import__("brainuad.scoring.ssim", fromlist=[name]).__dict__[name]
    out16 = fn(t(img).half(), t(rec).half(), t(mask))  # direct call keeps the input dtype
    assert out16.dtype == torch.float16 and torch.isfinite(out16).all()
    np.testing.assert_allclose(out.cpu().numpy(), ref, atol=5e-3)
    np.testing.assert_allclose(out16.float().cpu().numpy(), ref, atol=5e-3)


def test_ssim_maps_multi_shape_and_validation():
    x = torch.rand(2, 1, 10, 12)
    assert ssim_maps(x, x, (0.5, 1.0), 1.0, 2).shape == (2, 2, 1, 10, 12)
    with pytest.raises(ValueError):
        ssim_maps(x, x[..., :-1], (1.0,), 1.0, 2)
    with pytest.raises(ValueError):
        ssim_maps(x, x, (1.0,), "max", 2)


# --------------------------------------------------------------------------------------------
# conventions (config `conventions`): covariance population | sample, padding mirror | reflect
# --------------------------------------------------------------------------------------------
def _wang_ssim(a, b, sigma, data_range=1.0):
    """Plain numpy/scipy SSIM of Wang et al. 2004 with a Gaussian window: normalised weights
    exp(-k^2 / 2 sigma^2) over |k| <= int(3.5 sigma + 0.5) along every axis, Gaussian-weighted moments
    (no N / (N - 1)), scipy "mirror" boundary (= torch reflect padding, the author's code)."""
    r = int(3.5 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w /= w.sum()

    def f(z):
        for ax in range(z.ndim):
            z = ndi.correlate1d(z, w, axis=ax, mode="mirror")
        return z

    mx, my = f(a), f(b)
    sxx, syy, sxy = f(a * a) - mx**2, f(b * b) - my**2, f(a * b) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.0, 1.7])
def test_population_mirror_equals_plain_wang_ssim_2d(sigma):
    a, b = _pair((41, 37), seed=3)
    out = ssim_map(a, b, sigma=sigma, data_range=1.0, dims=2, covariance="population", padding="mirror")
    np.testing.assert_allclose(out, _wang_ssim(a, b, sigma), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
def test_population_mirror_equals_plain_wang_ssim_3d(sigma):
    a, b = _pair((15, 19, 17), seed=4)
    out = ssim_map(a, b, sigma=sigma, data_range=1.0, dims=3, covariance="population", padding="mirror")
    np.testing.assert_allclose(out, _wang_ssim(a, b, sigma), atol=1e-6, rtol=0)
    # ... and it is not the scikit-image convention (which the switches give back, next test)
    assert np.abs(out - _sk_ssim(a, b, sigma, sample=True)).max() > 1e-3


@pytest.mark.parametrize("dims, shape", [(2, (41, 37)), (3, (15, 19, 17))])
@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_sample_reflect_equals_skimage(dims, shape, sigma):
    a, b = _pair(shape, seed=5)
    out = ssim_map(a, b, sigma=sigma, data_range=1.0, dims=dims, covariance="sample", padding="reflect")
    np.testing.assert_allclose(out, _sk_ssim(a, b, sigma, sample=True), atol=1e-6, rtol=0)


def test_edge_voxel_by_hand_padding_and_covariance():
    """x = 1 in the first column, 0 elsewhere; y = 0. sigma = 0.3: radius 1, weights (e, 1, e) / (1 + 2 e)
    with e = exp(-1 / 0.18). At a first-column voxel (away from the first/last row) the window sees
    columns (pad, 0, 1): ``reflect`` pads with column 0 (x = 1), ``mirror`` with column 1 (x = 0). With
    y = 0: SSIM = C1 / (mu_x^2 + C1) * C2 / (s_x^2 + C2), mu_x = E[x] = E[x^2] (x is binary), s_x^2 = mu_x - mu_x^2
    (population) or times 9 / 8 (sample, N = 3 x 3 window voxels)."""
    x = np.zeros((5, 6))
    x[:, 0] = 1.0
    y = np.zeros_like(x)
    e = np.exp(-1 / 0.18)
    wc, ws = 1 / (1 + 2 * e), e / (1 + 2 * e)
    c1, c2 = 0.01**2, 0.03**2

    def hand(mu, scale=1.0):
        return c1 / (mu**2 + c1) * c2 / (scale * (mu - mu**2) + c2)

    mu = {"reflect": wc + ws, "mirror": wc}
    for padding in ("reflect", "mirror"):
        for covariance, scale in (("population", 1.0), ("sample", 9 / 8)):
            out = ssim_map(x, y, sigma=0.3, data_range=1.0, dims=2, covariance=covariance, padding=padding)
            np.testing.assert_allclose(out[2, 0], hand(mu[padding], scale), rtol=1e-10)
    assert not np.isclose(hand(mu["reflect"]), hand(mu["mirror"]))  # the edge voxel tells them apart
    # away from the edge (columns >= 2) the window sees no padding: the two boundaries agree
    np.testing.assert_allclose(ssim_map(x, y, 0.3, 1.0, 2, padding="reflect")[1:4, 2:5],
                               ssim_map(x, y, 0.3, 1.0, 2, padding="mirror")[1:4, 2:5], atol=1e-15)


@pytest.mark.parametrize("n, sigma", [(9, 1.0), (3, 2.0), (1, 1.0)])
def test_mirror_filter_matches_scipy_and_torch_pad(n, sigma):
    """mode "mirror" = scipy mirror for any radius (also longer than the axis) = torch's reflect padding."""
    rng = np.random.default_rng(0)
    x = rng.random((2, n))
    out = gaussian_filter_multi(torch.as_tensor(x), (sigma,), dims=1, truncate=3.5, mode="mirror")[0].numpy()
    ref = ndi.gaussian_filter1d(x, sigma, axis=-1, truncate=3.5, mode="mirror")
    np.testing.assert_allclose(out, ref, atol=1e-12)
    r = int(3.5 * sigma + 0.5)
    if r < n:  # torch allows reflect padding only up to n - 1
        padded = torch.nn.functional.pad(torch.as_tensor(x)[None], (r, r), mode="reflect")[0]
        w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        conv = np.stack([np.convolve(row, w / w.sum(), mode="valid") for row in padded.numpy()])
        np.testing.assert_allclose(out, conv, atol=1e-12)


@pytest.mark.parametrize("name", ["ssim", "mean_ssim", "ssim_ens"])
def test_registered_ssim_scores_take_the_conventions(name):
    img, rec, _ = _volume_inputs(shape=(1, 1, 9, 12, 11), n_rec=2)
    mask = np.ones(img.shape, dtype=bool)  # edge voxels included: there the paddings differ most
    kw = {"sigmas": [1.0]} if name == "ssim_ens" else {"sigma": 1.0}
    out = score(name, img, rec, mask, covariance="population", padding="mirror", **kw)
    mean = rec.astype(np.float32).mean(0).astype(np.float64)[0, 0]
    ref = (1 - _wang_ssim(img[0, 0].astype(np.float32).astype(np.float64), mean, 1.0)) * mask[0, 0]
    np.testing.assert_allclose(out[0, 0], ref, atol=1e-4)  # float32 (ssim_maps docstring: ~1e-4)
    other = score(name, img, rec, mask, covariance="sample", padding="reflect", **kw)
    assert np.abs(other - out).max() > 1e-3


def test_unknown_conventions_raise():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="covariance must be one of"):
        ssim_maps(x, x, (1.0,), 1.0, 2, covariance="unbiased")
    with pytest.raises(ValueError, match="padding must be one of"):
        ssim_maps(x, x, (1.0,), 1.0, 2, padding="edge")
