"""SSIM-based anomaly scores: ``ssim``, ``mean_ssim`` and the multi-scale ensemble ``ssim_ens``.

Per-pixel SSIM with a Gaussian window (Wang et al. 2004) in two conventions each for the local
(co)variances and the boundary (``covariance``: ``population`` = Wang et al.'s Gaussian-weighted moments as
the author's code, ``sample`` = scikit-image's ``N / (N - 1)``; ``padding``: ``mirror`` = the author's torch
reflect padding, ``reflect`` = scipy / scikit-image; definition, data range, 2D / 3D and precision:
:func:`ssim_maps`), all scales in one pass of exact matrix-product Gaussian filters
(:func:`gaussian_filter_multi`) on CPU and CUDA. The workflow passes the conventions of the config section
``conventions`` (:mod:`brainuad.conventions`); the defaults here are its ``thesis_text`` preset. Parameters
and defaults: config/README.md (``scorings``, ``conventions``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from . import register

SSIM_TRUNCATE = 3.5
"""Gaussian truncation (in sigmas) of the SSIM window: radius ``int(3.5 sigma + 0.5)``."""

DEFAULT_SIGMAS = (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7)
"""SSIM-ens scales (P8.4-§3.2: {0.3, 0.5, ..., 1.5, 1.7})."""

K1 = 0.01
K2 = 0.03

COVARIANCES = ("population", "sample")
"""SSIM local (co)variance conventions (see :func:`ssim_maps`)."""

PADDINGS = ("mirror", "reflect")
"""Gaussian-filter boundaries: scipy ``mode`` names (see :func:`boundary_indices`)."""


# --------------------------------------------------------------------------------------------
# dtype / shape helpers
# --------------------------------------------------------------------------------------------


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype used for computation: float64 stays float64, everything else becomes float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def spatial_dims(image: torch.Tensor, dims: int | None) -> int:
    """Resolve the ``dims`` parameter of a registered score for an image (B, 1, *spatial).

    ``None`` means the image's own spatial dimensionality (2 for slices, 3 for volumes).
    """
    n_spatial = image.dim() - 2
    if dims is None:
        return n_spatial
    dims = int(dims)
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if dims > n_spatial:
        raise ValueError(f"dims={dims} needs (B, 1, D, H, W) volumes, got shape {tuple(image.shape)}")
    return dims


# --------------------------------------------------------------------------------------------
# Gaussian filtering with a half-sample symmetric boundary
# --------------------------------------------------------------------------------------------


def gaussian_radius(sigma: float, truncate: float = SSIM_TRUNCATE) -> int:
    """Truncation radius ``int(truncate * sigma + 0.5)`` (scipy.ndimage's convention)."""
    return int(truncate * float(sigma) + 0.5)


def gaussian_kernel1d(
    sigma: float, truncate: float = SSIM_TRUNCATE, dtype=torch.float64, device=None
) -> torch.Tensor:
    """Normalised 1-D Gaussian weights.

    Returns
    -------
    Tensor, (2 r + 1,) with ``r = gaussian_radius(sigma, truncate)``; sums to one.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    r = gaussian_radius(sigma, truncate)
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (k / float(sigma)) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def reflect_indices(n: int, r: int) -> torch.Tensor:
    """Source indices of positions ``-r .. n - 1 + r`` under half-sample symmetric extension.

    Returns
    -------
    LongTensor, (n + 2 r,), values in [0, n). Works for any ``r`` (repeated reflection), like
    scipy's ``mode="reflect"`` (``c b a | a b c d | d c b``: the edge sample is repeated).
    """
    i = torch.arange(-r, n + r) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def mirror_indices(n: int, r: int) -> torch.Tensor:
    """Source indices of positions ``-r .. n - 1 + r`` under whole-sample symmetric extension.

    Returns
    -------
    LongTensor, (n + 2 r,), values in [0, n). Like scipy's ``mode="mirror"`` and torch's
    ``F.pad(mode="reflect")`` (``d c b | a b c d | c b a``: the edge sample is not repeated), for any
    ``r`` (repeated reflection; torch itself allows ``r < n`` only). An axis of length 1 repeats its sample.
    """
    if n == 1:
        return torch.zeros(2 * r + 1, dtype=torch.long)
    i = torch.arange(-r, n + r) % (2 * n - 2)
    return torch.where(i >= n, 2 * n - 2 - i, i)


def boundary_indices(n: int, r: int, mode: str) -> torch.Tensor:
    """:func:`reflect_indices` (``mode="reflect"``) or :func:`mirror_indices` (``mode="mirror"``)."""
    if mode == "reflect":
        return reflect_indices(n, r)
    if mode == "mirror":
        return mirror_indices(n, r)
    raise ValueError(f"padding must be one of {PADDINGS}, got {mode!r}")


@lru_cache(maxsize=64)
def _filter_matrices(
    n: int, sigmas: tuple, truncate: float, dtype: torch.dtype, device: torch.device, mode: str = "reflect"
) -> torch.Tensor:
    """The 1-D Gaussian filters along an axis of length ``n`` as matrices, boundary ``mode``.

    Returns
    -------
    Tensor, (K, n, n) for K = len(sigmas): ``out = M[k] @ signal`` equals
    ``scipy.ndimage.gaussian_filter1d(signal, sigmas[k], truncate=truncate, mode=mode)``
    (``mode`` "reflect" or "mirror"). Cached; never modify the result in place.
    """
    mats = torch.zeros(len(sigmas), n, n, dtype=torch.float64)
    for k, sigma in enumerate(sigmas):
        w = gaussian_kernel1d(sigma, truncate)
        r = (w.numel() - 1) // 2
        src = boundary_indices(n, r, mode)
        rows = torch.arange(n).unsqueeze(1).expand(n, 2 * r + 1)
        cols = src[rows + torch.arange(2 * r + 1)]
        mats[k].index_put_((rows, cols), w.expand(n, 2 * r + 1), accumulate=True)
    return mats.to(dtype=dtype, device=device)


def gaussian_filter_multi(
    x: torch.Tensor, sigmas: Sequence[float], dims: int, truncate: float = SSIM_TRUNCATE, mode: str = "reflect"
) -> torch.Tensor:
    """Gaussian-filter ``x`` along its last ``dims`` axes for several sigmas in one pass.

    Parameters
    ----------
    x : Tensor, (..., *spatial) with ``len(spatial) == dims``
    sigmas : sequence of K floats
    dims : int, 1, 2 or 3
    truncate : float
        Truncation in sigmas (3.5 for SSIM windows, 4.0 = scipy's default for smoothing).
    mode : {"reflect", "mirror"}, default "reflect"
        Boundary, as scipy names it (:func:`boundary_indices`).

    Returns
    -------
    Tensor, (K, *x.shape): ``out[k]`` equals
    ``scipy.ndimage.gaussian_filter(x, sigmas[k], truncate=truncate, mode=mode)`` applied over
    the last ``dims`` axes only.
    """
    sigmas = tuple(float(s) for s in sigmas)
    n_k = len(sigmas)
    shape = x.shape
    if not 1 <= dims <= x.dim():
        raise ValueError(f"dims={dims} does not fit an input of shape {tuple(shape)}")
    spatial = tuple(int(n) for n in shape[x.dim() - dims :])
    lead = math.prod(shape[: x.dim() - dims])
    mats = [_filter_matrices(n, sigmas, float(truncate), x.dtype, x.device, mode) for n in spatial]

    # last axis, then the second-to-last, one scale at a time: two plain matrix products per
    # scale on contiguous data (no broadcast copies of x or of the matrices)
    n_w = spatial[-1]
    rows = x.reshape(-1, n_w)
    out = x.new_empty((n_k, *shape))
    if dims == 1:
        for k in range(n_k):
            torch.matmul(rows, mats[-1][k].T, out=out[k].view(-1, n_w))
        return out
    n_h = spatial[-2]
    tmp = torch.empty_like(rows)
    tmp3 = tmp.view(-1, n_h, n_w)
    for k in range(n_k):
        torch.matmul(rows, mats[-1][k].T, out=tmp)
        torch.matmul(mats[-2][k].expand(tmp3.shape[0], n_h, n_h), tmp3, out=out[k].view(-1, n_h, n_w))
    # remaining (slice) axes: (K, 1, n, n) @ (K, pre, n, post); pre is small here
    for ax in range(dims - 3, -1, -1):
        n = spatial[ax]
        pre = lead * math.prod(spatial[:ax])
        out = torch.matmul(mats[ax].unsqueeze(1), out.view(n_k, pre, n, math.prod(spatial[ax + 1 :])))
    return out.view(n_k, *shape)


def gaussian_filter(x: torch.Tensor, sigma: float, dims: int, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian smoothing over the last ``dims`` axes (scipy ``gaussian_filter``, mode "reflect").

    Parameters
    ----------
    x : Tensor, (..., *spatial)
    sigma : float
    dims : int
    truncate : float, default 4.0 (scipy's default)

    Returns
    -------
    Tensor, x.shape, in x's dtype.
    """
    return gaussian_filter_multi(x, (sigma,), dims, truncate)[0]


# --------------------------------------------------------------------------------------------
# SSIM maps
# --------------------------------------------------------------------------------------------


def resolve_data_range(x: torch.Tensor, y: torch.Tensor, data_range, dims: int) -> torch.Tensor | float:
    """The data range L as a float or, for ``"auto"``, a tensor broadcastable to ``x``.

    ``"auto"`` = ``max(x.max() - x.min(), y.max() - y.min())`` per item of the first axis when x
    has more than ``dims`` axes (per volume / per slice of a batch), else over the whole array.
    """
    if isinstance(data_range, str):
        if data_range != "auto":
            raise ValueError(f"data_range must be a number or 'auto', got {data_range!r}")
        if x.dim() > dims:
            xf, yf = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
            rng = torch.maximum(xf.amax(1) - xf.amin(1), yf.amax(1) - yf.amin(1))
            return rng.reshape(-1, *([1] * (x.dim() - 1)))
        return torch.maximum(x.max() - x.min(), y.max() - y.min())
    data_range = float(data_range)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    return data_range


def ssim_maps(
    x: torch.Tensor,
    y: torch.Tensor,
    sigmas: Sequence[float],
    data_range=1.0,
    dims: int = 2,
    k1: float = K1,
    k2: float = K2,
    covariance: str = "population",
    padding: str = "reflect",
) -> torch.Tensor:
    """Per-pixel SSIM for several Gaussian window spreads, computed in one pass.

    Parameters
    ----------
    x, y : Tensor, (..., *spatial), same shape; the last ``dims`` axes are spatial
    sigmas : sequence of K floats
    data_range : float or "auto"
    dims : int, 2 (per slice) or 3 (per volume)
    k1, k2 : float
    covariance : {"population", "sample"}, default "population"
        Local (co)variances as Wang et al.'s Gaussian-weighted moments, or scaled by ``NP / (NP - 1)``
        (scikit-image's sample covariance); see Notes.
    padding : {"mirror", "reflect"}, default "reflect"
        Window boundary: ``mirror`` (edge voxel not repeated; the author's torch reflect padding) or
        ``reflect`` (edge voxel repeated; scipy / scikit-image); see Notes.

    Returns
    -------
    Tensor, (K, *x.shape), in the compute dtype (float32, or float64 for float64 inputs).

    Notes
    -----
    SSIM definition (Wang et al. 2004, thesis §3.4.4, spec §4.5)::

        SSIM = ((2 mu_x mu_y + C1) (2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1) (s_x^2 + s_y^2 + C2))

    with local moments from a Gaussian window of spread ``sigma``:

    * truncation radius ``r = int(3.5 * sigma + 0.5)``, i.e. kernel size ``2 r + 1`` (thesis formula;
      ``sigma = 1`` gives 9, the SSIM-ens set {0.3, 0.5, ..., 1.7} gives 3, 5, 5, 7, 9, 11, 11, 13);
    * weights ``exp(-k^2 / (2 sigma^2))`` normalised to sum to one, applied separably along each of the
      last ``dims`` axes;
    * boundary ``padding``: ``"reflect"`` = half-sample symmetric (scipy's ``mode="reflect"``:
      ``d c b a | a b c d | d c b a``), ``"mirror"`` = whole-sample symmetric (scipy's ``mode="mirror"`` =
      torch's ``F.pad(mode="reflect")``: ``d c b | a b c d | c b a``);
    * ``covariance``: ``"population"`` = the Gaussian-weighted moments ``s_x^2 = sum_i w_i (x_i - mu_x)^2``
      of Wang et al. 2004 (eq. 14-16); ``"sample"`` = variances and covariance scaled by ``NP / (NP - 1)``
      with ``NP = (2 r + 1) ** dims``;
    * ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, ``K1 = 0.01``, ``K2 = 0.03``, ``L`` = data range.

    ``covariance="sample", padding="reflect"`` is exactly what ``skimage.metrics.structural_similarity(a, b,
    data_range=L, gaussian_weights=True, sigma=sigma, use_sample_covariance=True, full=True)[1]`` computes
    (``covariance="population"`` that with ``use_sample_covariance=False``); ``covariance="population",
    padding="mirror"`` is the SSIM of the author's public code (a vendored torchmetrics 3D SSIM with torch
    reflect padding) and equals a plain scipy implementation of Wang et al.'s Gaussian-window SSIM with the
    ``mirror`` boundary. Both checked to 1e-6 in float64 by the tests, in 2D and 3D. On a brain volume the
    two change ``1 - SSIM`` by up to 62 % at the brain voxels of the first and last slice, almost all from
    the padding (``benchmarks/bench_ssim_conventions.py``; config/README.md, ``conventions``).

    Implementation: the 1-D Gaussian convolution with the reflect boundary along an axis of length
    ``n`` is a fixed linear map, so it is applied as a (n, n) matrix (built once per shape, sigma,
    dtype and device; the boundary is folded into the matrix) with one matrix product per axis. The
    five moment images (x, y, x^2, y^2, xy) are stacked into one tensor and all scales are filtered in
    one pass over it (:func:`gaussian_filter_multi`), then the SSIM arithmetic runs in place on the
    (K, 5, ...) moment buffer. This runs unchanged on CPU and CUDA and is exact (no FFT, no
    approximation). Dense (n, n) products do more arithmetic than a 13-tap convolution but are what
    BLAS/cuBLAS do best; a banded/blocked variant was measured and was not faster on the CPU.

    Data range: ``data_range`` is explicit (default 1.0: the pipeline's images are scaled to [0, 1]).
    ``data_range="auto"`` uses ``max(x.max() - x.min(), y.max() - y.min())`` per batch item (per
    volume for (B, 1, D, H, W) inputs) as the public code does per call on one volume.

    2D vs 3D: ``dims=2`` filters the last two axes (per axial slice), ``dims=3`` the last three (whole
    volume, isotropic in voxels, as the public code does). The registered scores default to the input's
    own spatial dimensionality (3 for (B, 1, D, H, W) volumes, 2 for (B, 1, H, W) slices).

    Precision: computed in float32, or float64 for float64 inputs; float16 inputs are upcast to
    float32 and the map is returned in the input's dtype. Like scikit-image, the variances come from
    ``E[x^2] - E[x]^2``; in float32 this cancellation limits the agreement with the float64 result to
    about 1e-4 (worst at sigma = 0.3, where the local variance is smallest), 2e-6 at sigma >= 1.
    """
    if x.shape != y.shape:
        raise ValueError(f"x and y shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() < dims:
        raise ValueError(f"need at least {dims} axes, got shape {tuple(x.shape)}")
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    dt = compute_dtype(x.dtype)
    x, y = x.to(dt), y.to(dt)
    sigmas = tuple(float(s) for s in sigmas)
    rng = resolve_data_range(x, y, data_range, dims)
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2

    moments = gaussian_filter_multi(torch.stack([x, y, x * x, y * y, x * y]), sigmas, dims, mode=padding)
    ux, uy, uxx, uyy, uxy = moments.unbind(1)  # each (K, *x.shape); overwritten below
    if covariance == "sample":
        n_pts = torch.tensor([(2 * gaussian_radius(s) + 1) ** dims for s in sigmas], dtype=dt, device=x.device)
        cov_norm = (n_pts / (n_pts - 1)).reshape(-1, *([1] * x.dim()))
    else:
        cov_norm = 1.0
    # in place on the moment buffers (memory traffic dominates on CPUs):
    # num = (2 ux uy + C1) (2 cov_norm (uxy - ux uy) + C2)
    # den = (ux^2 + uy^2 + C1) (cov_norm (uxx + uyy - ux^2 - uy^2) + C2)
    uxuy = ux * uy
    num2 = uxy.sub_(uxuy).mul_(2 * cov_norm).add_(c2)
    num1 = uxuy.mul_(2).add_(c1)
    ux2, uy2 = ux.square_(), uy.square_()
    den2 = uxx.add_(uyy).sub_(ux2).sub_(uy2).mul_(cov_norm).add_(c2)
    den1 = ux2.add_(uy2).add_(c1)
    return num1.mul_(num2).div_(den1.mul_(den2))


def ssim_map(x, y, sigma: float = 1.0, data_range=1.0, dims: int = 2, k1: float = K1, k2: float = K2,
             covariance: str = "population", padding: str = "reflect"):
    """Per-pixel SSIM map with a Gaussian window (conventions: see :func:`ssim_maps`).

    Parameters
    ----------
    x, y : Tensor or ndarray, (..., *spatial), same shape; the last ``dims`` axes are spatial,
        leading axes are a batch (e.g. (H, W), (B, 1, H, W), (B, 1, D, H, W))
    sigma : float, default 1.0
        Gaussian spread; window radius ``int(3.5 sigma + 0.5)``.
    data_range : float or "auto", default 1.0
    dims : int, default 2
        2 = per slice (last two axes), 3 = per volume (last three axes).
    k1, k2 : float, default 0.01, 0.03
    covariance : {"population", "sample"}, default "population"
    padding : {"mirror", "reflect"}, default "reflect"

    Returns
    -------
    Same type as x, x.shape. Tensors come back in x's dtype (computed in float32/float64);
    ndarrays in float64 for float64 input, else float32.
    """
    as_numpy = isinstance(x, np.ndarray)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    out = ssim_maps(xt, yt, (sigma,), data_range, dims, k1, k2, covariance, padding)[0]
    if as_numpy:
        return out.cpu().numpy()
    return out.to(xt.dtype)


def scale_ensemble(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax(-SSIM) weights over the first (scale) axis and the weighted SSIM.

    Parameters
    ----------
    s : Tensor, (K, ...) SSIM maps

    Returns
    -------
    ens : (...), ``sum_k w_k s_k``
    w : (K, ...), ``softmax_k(-s_k)``
    """
    w = torch.softmax(-s, dim=0)
    return (w * s).sum(0), w


# --------------------------------------------------------------------------------------------
# registered scores
# --------------------------------------------------------------------------------------------


def _one_minus_ssim(image, recons, mask, sigma, data_range, dims, k1, k2, covariance, padding):
    d = spatial_dims(image, dims)
    mean = recons.mean(dim=0, dtype=compute_dtype(recons.dtype))
    s = ssim_maps(image, mean, (sigma,), data_range, d, k1, k2, covariance, padding)[0]
    return ((1 - s) * mask).to(image.dtype)


@register("ssim")
def ssim(
    image: torch.Tensor,
    recons: torch.Tensor,
    mask: torch.Tensor,
    sigma: float = 1.0,
    data_range=1.0,
    dims: int | None = None,
    k1: float = K1,
    k2: float = K2,
    covariance: str = "population",
    padding: str = "reflect",
) -> torch.Tensor:
    """``1 - SSIM_sigma(x, mean_s recons)`` inside the mask, zero outside.

    Parameters
    ----------
    image : (B, 1, H, W) or (B, 1, D, H, W)
    recons : (S, *image.shape); averaged over S first
    mask : image shape, bool
    sigma : float, default 1.0 (kernel size 9)
    data_range : float or "auto", default 1.0
    dims : None, 2 or 3, default None = the image's spatial dimensionality
        (3D SSIM per volume for volumes as in the public code, 2D for slices)
    k1, k2 : float, default 0.01, 0.03
    covariance : {"population", "sample"}, default "population"
    padding : {"mirror", "reflect"}, default "reflect"
        SSIM conventions (:func:`ssim_maps`); the workflow passes config ``conventions``.

    Returns
    -------
    Tensor, image shape and dtype.
    """
    return _one_minus_ssim(image, recons, mask, sigma, data_range, dims, k1, k2, covariance, padding)


# S_mean of P8.5: the same computation as ``ssim`` (1 - SSIM(x, mean of the S reconstructions)),
# registered under the name used for the multi-sample rows of thesis Tab4.5 / P8.5-Tab1 (S = N = 10).
mean_ssim = register("mean_ssim")(ssim)


@register("ssim_ens")
def ssim_ens(
    image: torch.Tensor,
    recons: torch.Tensor,
    mask: torch.Tensor,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    data_range=1.0,
    dims: int | None = None,
    k1: float = K1,
    k2: float = K2,
    covariance: str = "population",
    padding: str = "reflect",
) -> torch.Tensor:
    """SSIM-ens (P8.4): ``1 - sum_k w_k SSIM_{sigma_k}(x, mean_s recons)`` inside the mask.

    ``w_k = exp(-SSIM_k) / sum_j exp(-SSIM_j)`` per pixel. All scales in one pass
    (:func:`gaussian_filter_multi`).

    Parameters
    ----------
    image : (B, 1, H, W) or (B, 1, D, H, W)
    recons : (S, *image.shape); averaged over S first
    mask : image shape, bool
    sigmas : sequence of floats, default (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7)
    data_range, dims, k1, k2, covariance, padding : as in :func:`ssim`

    Returns
    -------
    Tensor, image shape and dtype.
    """
    d = spatial_dims(image, dims)
    mean = recons.mean(dim=0, dtype=compute_dtype(recons.dtype))
    ens, _ = scale_ensemble(ssim_maps(image, mean, sigmas, data_range, d, k1, k2, covariance, padding))
    return ((1 - ens) * mask).to(image.dtype)
