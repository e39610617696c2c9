"""Mahalanobis-distance (MHD) scores over N reconstructions: ``mhd_diag`` and ``mhd_full`` (P8.5).

The N = S reconstructions of one input (thesis: N = 10 cDDPM samples) define a pseudo-healthy
distribution with mean ``mu`` and covariance ``Sigma``; the input's deviation ``d = x - mu`` is
scored pixel-wise: ``mhd_diag`` with the per-pixel variance, ``mhd_full`` with the full brain-pixel
covariance (exact low-rank Woodbury solve, :func:`mhd_full_woodbury`), then post-processed
(see ``_postprocess``). Parameters and defaults: config/README.md (``scorings``).
"""

from __future__ import annotations

import math

import torch

from . import register
from .ssim import compute_dtype, gaussian_filter, spatial_dims, ssim_maps

TERMS = ("sqrt_nan0", "abs_sqrt", "whitened", "quad")


# --------------------------------------------------------------------------------------------
# grouping pixels into the units whose covariance is modelled
# --------------------------------------------------------------------------------------------


def _units(image: torch.Tensor, recons: torch.Tensor, mask: torch.Tensor, dims: int):
    """Flatten inputs to (G, P) units: one per slice (``dims=2``) or per volume (``dims=3``).

    Returns
    -------
    x : (G, P), r : (S, G, P), m : (G, P) bool
    """
    p = int(math.prod(image.shape[image.dim() - dims :]))
    return image.reshape(-1, p), recons.reshape(recons.shape[0], -1, p), mask.reshape(-1, p)


def _check_samples(recons: torch.Tensor) -> int:
    n = recons.shape[0]
    if n < 2:
        raise ValueError(f"Mahalanobis scores need at least 2 reconstructions, got S={n}")
    return n


# --------------------------------------------------------------------------------------------
# full covariance: Woodbury (production) and dense (reference for tests)
# --------------------------------------------------------------------------------------------


def _term_to_value(t: torch.Tensor, term: str) -> torch.Tensor:
    """Per-pixel value from the signed quadratic-form terms ``t = d * (Sigma^-1 d)``."""
    if term == "sqrt_nan0":
        v = torch.sqrt(t)
        return torch.where(torch.isfinite(v), v, torch.zeros((), dtype=v.dtype, device=v.device))
    if term == "abs_sqrt":
        return torch.sqrt(t.abs())
    if term == "quad":
        return t
    raise ValueError(f"term must be one of {TERMS}, got {term!r}")


def mhd_full_woodbury(
    x: torch.Tensor, r: torch.Tensor, m: torch.Tensor, lam: float = 1e-2, term: str = "sqrt_nan0"
) -> torch.Tensor:
    """Pixel-wise full-covariance MHD of G units at once, exact via Woodbury (no (P, P) matrix).

    Parameters
    ----------
    x : (G, P) inputs
    r : (N, G, P) reconstructions, N >= 2
    m : (G, P) bool, pixels that enter the covariance (brain); others get 0
    lam : float, ridge added to the covariance diagonal
    term : one of ``TERMS`` (see Notes)

    Returns
    -------
    Tensor, (G, P), float64. Cost O(G N^2 P) time, O(G N P) memory.

    Notes
    -----
    ``mhd_full``
        full pixel covariance of the brain pixels of one slice (``dims=2``, thesis/public code) or of
        one whole volume (``dims=3``, about 460 k voxels for 96 x 96 x 50)::

            Sigma = D^T D / (N - 1) + lam I        D: (N, P), rows = reconstruction - mu

        ``Sigma`` has rank <= N - 1 plus ``lam I``, so with ``U = D^T / sqrt(N - 1)`` (P, N) the
        Woodbury identity gives, exactly and without any (P, P) matrix::

            Sigma^-1 d = (d - U (lam I_N + U^T U)^-1 U^T d) / lam

        (one N x N solve per slice; all slices of a batch are solved together, non-brain pixels are
        zeroed in ``D`` and ``d``, which is identical to restricting to the brain pixels). The
        per-pixel value is derived from the term ``t_i = d_i (Sigma^-1 d)_i`` (the quadratic form
        ``d^T Sigma^-1 d = sum_i t_i`` is the squared MHD), chosen by ``term``:

        ``"sqrt_nan0"`` (default, the public code)
            ``sqrt(t_i)``, and 0 where ``t_i < 0`` (the public code's ``sqrt`` gives NaN there, which
            it then sets to 0). ``t_i`` can be negative: it is a pixel's share of a quadratic form,
            not a square.
        ``"abs_sqrt"``
            ``sqrt(|t_i|)``.
        ``"whitened"``
            ``|(Sigma^-1/2 d)_i|`` with the symmetric (ZCA) square root; the squares sum to the
            squared MHD and every pixel's share is non-negative. Exact from the low-rank structure:
            with ``U^T U = V diag(e) V^T``,
            ``Sigma^-1/2 d = d / sqrt(lam) + U V diag(g(e)) V^T U^T d``,
            ``g(e) = -1 / (sqrt(lam) sqrt(lam + e) (sqrt(lam) + sqrt(lam + e)))``.
        ``"quad"``
            the signed term ``t_i`` itself.

    ``lam``: the thesis text states 1e-5 added to the diagonal, the public code uses ``mh_regu = 1e-2``;
    the default here is 1e-2 (public code). With N = 10 samples Sigma has rank <= 9, so ``lam`` sets the
    scale of every direction outside the samples' span: it matters.

    Precision: the Woodbury path (``D``, ``d``, Gram matrix, solve/eigendecomposition and the terms)
    runs in float64 whatever the input dtype: the N x N system ``lam I + U^T U`` has the condition
    number ``(lam + e_max) / lam`` (about 5e2 for a 96 x 96 brain slice with lam = 1e-2 and
    reconstruction noise of a few percent, 1000 times more with lam = 1e-5), and the final ``/ lam``
    amplifies rounding in ``d - U c``. Float64 costs tens of ms per 50-slice volume on two CPU cores.
    The public code inverts the dense (P, P) covariance and casts the inverse to float16
    (``torch.inverse(...).to(torch.float16)``); that is not reproduced, under either preset of config
    ``conventions``: this exact float64 Woodbury result is the only implementation. The difference is the
    float16 rounding of the inverse (relative precision 2^-11): measured with
    ``benchmarks/bench_mhd_float16.py`` (8 slices of 64 x 64, 1.8 k brain pixels per slice, N = 10,
    lam = 1e-2) it is 3e-4 of the maximum on the raw ``sqrt_nan0`` map and at most 8e-5 (mean 8e-7 over the
    brain) on the final post-processed map (min-max, smoothing, ``1 - SSIM`` factor; values in [0, 0.63]),
    i.e. about 1e-4. Diagonal MHD and the post-processing run in float32 (float64 for float64 inputs). Maps
    are returned in the image's dtype (the registry passes float32).
    """
    if term not in TERMS:
        raise ValueError(f"term must be one of {TERMS}, got {term!r}")
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    n, g, p = r.shape
    f64 = torch.float64
    mf = m.to(f64)
    # U^T per unit, (G, N, P): centred reconstructions, zero outside the mask, / sqrt(N - 1)
    u = torch.empty((g, n, p), dtype=f64, device=r.device).copy_(r.transpose(0, 1))
    mu = u.mean(1)
    u.sub_(mu.unsqueeze(1)).mul_((mf / math.sqrt(n - 1)).unsqueeze(1))
    d = (x.to(f64) - mu).mul_(mf)  # (G, P)
    gram = u @ u.transpose(1, 2)  # (G, N, N) = U^T U
    utd = torch.bmm(u, d.unsqueeze(2))  # (G, N, 1) = U^T d
    if term == "whitened":
        e, v = torch.linalg.eigh(gram)
        sl = math.sqrt(lam)
        se = torch.sqrt(lam + e.clamp_min(0))
        gain = -1.0 / (sl * se * (sl + se))  # (G, N): g(e)
        coef = v @ (gain.unsqueeze(2) * (v.transpose(1, 2) @ utd))  # (G, N, 1)
        w = torch.bmm(coef.transpose(1, 2), u).squeeze(1).add_(d, alpha=1 / sl)  # Sigma^-1/2 d
        return w.abs_().mul_(mf)
    eye = torch.eye(n, dtype=f64, device=x.device)
    c = torch.linalg.solve(gram + lam * eye, utd)  # (G, N, 1)
    sinv_d = (d - torch.bmm(c.transpose(1, 2), u).squeeze(1)).div_(lam)  # Sigma^-1 d
    return _term_to_value(sinv_d.mul_(d), term).mul_(mf)


def _mhd_full_dense(
    x: torch.Tensor,
    r: torch.Tensor,
    m: torch.Tensor,
    lam: float = 1e-2,
    term: str = "sqrt_nan0",
    method: str = "solve",
    dtype=torch.float64,
) -> torch.Tensor:
    """Dense reference for :func:`mhd_full_woodbury` (tests and benchmarks only).

    Forms the (P, P) covariance of each unit's brain pixels and solves with it (``"solve"``),
    inverts it like the public code (``"inv"``; ``Sigma^-1 @ d``), or uses its eigendecomposition
    for ``term="whitened"``. Same parameters and result shape as :func:`mhd_full_woodbury`.
    """
    n = r.shape[0]
    out = torch.zeros(x.shape, dtype=dtype, device=x.device)
    for gi in range(x.shape[0]):
        idx = torch.nonzero(m[gi]).flatten()
        if idx.numel() == 0:
            continue
        rs = r[:, gi, idx].to(dtype)
        mu = rs.mean(0)
        d = x[gi, idx].to(dtype) - mu
        dev = rs - mu
        sigma = dev.T @ dev / (n - 1) + lam * torch.eye(idx.numel(), dtype=dtype, device=x.device)
        if term == "whitened":
            e, v = torch.linalg.eigh(sigma)
            val = (v @ ((v.T @ d) / torch.sqrt(e))).abs()
        else:
            sinv_d = torch.linalg.inv(sigma) @ d if method == "inv" else torch.linalg.solve(sigma, d)
            val = _term_to_value(d * sinv_d, term)
        out[gi, idx] = val
    return out


# --------------------------------------------------------------------------------------------
# post-processing shared by both MHD scores
# --------------------------------------------------------------------------------------------


def minmax_per_item(a: torch.Tensor) -> torch.Tensor:
    """``(a - min) / (max - min)`` per item of the first axis; constant items become 0.

    Parameters
    ----------
    a : Tensor, (B, ...)
    """
    flat = a.reshape(a.shape[0], -1)
    lo = flat.amin(1).reshape(-1, *([1] * (a.dim() - 1)))
    hi = flat.amax(1).reshape(-1, *([1] * (a.dim() - 1)))
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (a - lo) / safe, torch.zeros_like(a))


def _postprocess(
    raw, image, mu, mask, minmax, smooth_sigma, smooth_dims, combine_ssim, ssim_sigma, data_range, ssim_dims,
    ssim_covariance="population", ssim_padding="reflect",
):
    """Post-processing of a raw MHD map. raw, image, mu, mask: (B, 1, *spatial).

    Post-processing (each step a switch; all off gives the raw MHD map, zero outside the mask), in
    this order, which is the public code's (``mh_dist`` -> min-max -> ``gaussian_filter`` -> ``*
    (1 - SSIM) * mask``) and agrees with the thesis (Gaussian filter on the MHD map, then
    ``S = MHD * (1 - SSIM)``):

    1. raw MHD map, zero outside the mask;
    2. ``minmax``: ``(m - min) / (max - min)`` per batch item over the whole map (background zeros
       included, as in the public code, so the minimum is normally 0) -- per volume for
       (B, 1, D, H, W) inputs, per slice for (B, 1, H, W) inputs (pass volumes to reproduce the code);
    3. ``smooth_sigma``: Gaussian filter, ``truncate = 4`` and mode "reflect" (scipy's
       ``gaussian_filter`` defaults, as in the public code) over ``smooth_dims`` axes (default: all
       spatial axes, i.e. 3D over the volume like the public code);
    4. ``combine_ssim``: element-wise product with ``1 - SSIM_{ssim_sigma}(x, mu)`` (S_mean), in the SSIM
       conventions ``ssim_covariance`` / ``ssim_padding`` (:func:`brainuad.scoring.ssim.ssim_maps`);
    5. multiplied by the mask.
    """
    dt = compute_dtype(image.dtype)
    out = raw.to(dt) * mask
    if minmax:
        out = minmax_per_item(out)
    if smooth_sigma:
        out = gaussian_filter(out, float(smooth_sigma), spatial_dims(image, smooth_dims), truncate=4.0)
    if combine_ssim:
        s = ssim_maps(image, mu, (ssim_sigma,), data_range, spatial_dims(image, ssim_dims),
                      covariance=ssim_covariance, padding=ssim_padding)[0]
        out = out * (1 - s)
    return (out * mask).to(image.dtype)


# --------------------------------------------------------------------------------------------
# registered scores
# --------------------------------------------------------------------------------------------


@register("mhd_diag")
def mhd_diag(
    image: torch.Tensor,
    recons: torch.Tensor,
    mask: torch.Tensor,
    lam: float = 1e-2,
    minmax: bool = True,
    smooth_sigma: float | None = 1.0,
    smooth_dims: int | None = None,
    combine_ssim: bool = True,
    ssim_sigma: float = 1.0,
    data_range=1.0,
    ssim_dims: int | None = None,
    ssim_covariance: str = "population",
    ssim_padding: str = "reflect",
) -> torch.Tensor:
    """S^MHD_diag: diagonal-covariance MHD ``|x - mu| / sqrt(var + lam)``, post-processed.

    Parameters
    ----------
    image : (B, 1, H, W) or (B, 1, D, H, W)
    recons : (S, *image.shape), S >= 2 reconstructions (thesis N = 10)
    mask : image shape, bool
    lam : float, default 1e-2, added to the unbiased per-pixel variance over S
    minmax : bool, default True, min-max per batch item (step 2)
    smooth_sigma : float or None, default 1.0; None/0 = no smoothing (step 3)
    smooth_dims : None, 2 or 3, default None = all spatial axes
    combine_ssim : bool, default True, multiply by ``1 - SSIM(x, mu)`` (step 4)
    ssim_sigma : float, default 1.0
    data_range : float or "auto", default 1.0, for the SSIM factor
    ssim_dims : None, 2 or 3, default None = the image's spatial dimensionality
    ssim_covariance : {"population", "sample"}, default "population"
    ssim_padding : {"mirror", "reflect"}, default "reflect"
        SSIM conventions of the factor (step 4); the workflow passes config ``conventions``.

    Returns
    -------
    Tensor, image shape and dtype; zero outside the mask. With ``minmax=False, smooth_sigma=None,
    combine_ssim=False`` the raw standardised residual.
    """
    _check_samples(recons)
    dt = compute_dtype(image.dtype)
    r = recons.to(dt)
    mu = r.mean(0)
    var = (r - mu).square_().sum(0).div_(r.shape[0] - 1)  # unbiased; faster than Tensor.var(0) on CPU
    raw = (image.to(dt) - mu).abs() / torch.sqrt(var + lam)
    return _postprocess(
        raw, image, mu, mask, minmax, smooth_sigma, smooth_dims, combine_ssim, ssim_sigma, data_range, ssim_dims,
        ssim_covariance, ssim_padding,
    )


@register("mhd_full")
def mhd_full(
    image: torch.Tensor,
    recons: torch.Tensor,
    mask: torch.Tensor,
    lam: float = 1e-2,
    term: str = "sqrt_nan0",
    dims: int = 2,
    minmax: bool = True,
    smooth_sigma: float | None = 1.0,
    smooth_dims: int | None = None,
    combine_ssim: bool = True,
    ssim_sigma: float = 1.0,
    data_range=1.0,
    ssim_dims: int | None = None,
    ssim_covariance: str = "population",
    ssim_padding: str = "reflect",
) -> torch.Tensor:
    """S^MHD_full (S_sMHD): full-covariance MHD over brain pixels, exact Woodbury, post-processed.

    Parameters
    ----------
    image : (B, 1, H, W) or (B, 1, D, H, W)
    recons : (S, *image.shape), S >= 2 reconstructions (thesis N = 10)
    mask : image shape, bool; only brain pixels enter the covariance
    lam : float, default 1e-2 (public code; thesis text 1e-5)
    term : str, default "sqrt_nan0"; one of "sqrt_nan0", "abs_sqrt", "whitened", "quad"
    dims : int, default 2: one covariance per axial slice (thesis/public code); 3: one per
        volume (needs (B, 1, D, H, W))
    minmax, smooth_sigma, smooth_dims, combine_ssim, ssim_sigma, data_range, ssim_dims, ssim_covariance,
    ssim_padding :
        as in :func:`mhd_diag`

    Returns
    -------
    Tensor, image shape and dtype; zero outside the mask.
    """
    _check_samples(recons)
    d = spatial_dims(image, dims)
    x, r, m = _units(image, recons, mask, d)
    raw = mhd_full_woodbury(x, r, m, float(lam), term).reshape(image.shape)
    mu = recons.to(compute_dtype(image.dtype)).mean(0)
    return _postprocess(
        raw, image, mu, mask, minmax, smooth_sigma, smooth_dims, combine_ssim, ssim_sigma, data_range, ssim_dims,
        ssim_covariance, ssim_padding,
    )
