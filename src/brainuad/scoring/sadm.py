"""The SADM score (P8.6; method-spec §4.7): the cDDPM's SSIM map and the Stage II Unet's prediction, weighted.

AS = β · x̃ + (1 − β) · ŷ, with x̃ = median_k((1 − SSIM_σ(x, x̂)) · M) · M the unsupervised map of the
frozen Stage I reconstructions x̂ and ŷ the Unet's sigmoid prediction (· M), M the brain mask. β = 1 is the
cDDPM alone, β = 0 the Unet alone (P8.6-Fig5 sweeps β). The thesis' AS = x̃ + ŷ is 2 · AS(β = 0.5): the same
voxel ranking, hence the same [DICE] (thresholds are searched) and AUPRC.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from . import register
from .ssim import K1, K2, ssim


def median_filter(amap: torch.Tensor, size: int) -> torch.Tensor:
    """Cubic median filter of every (D, H, W) volume (or (H, W) slice) of a (B, 1, ...) map (scipy, reflect)."""
    if not size:
        return amap
    arr = amap.detach().float().cpu().numpy()
    out = np.stack([ndimage.median_filter(a[0], size=int(size))[None] for a in arr])
    return torch.from_numpy(out).to(amap.device, amap.dtype)


@register("sadm", uses="recons+maps")
def sadm(
    image: torch.Tensor,
    recons: torch.Tensor,
    mask: torch.Tensor,
    model_map: torch.Tensor,
    beta: float = 0.5,
    sigma: float = 1.0,
    median: int = 5,
    data_range=1.0,
    dims: int | None = None,
    k1: float = K1,
    k2: float = K2,
    covariance: str = "population",
    padding: str = "reflect",
) -> torch.Tensor:
    """AS = β · x̃ + (1 − β) · ŷ inside the mask, zero outside.

    Parameters
    ----------
    image : (B, 1, H, W) or (B, 1, D, H, W)
    recons : (S, *image.shape), the frozen Stage I reconstructions (averaged over S)
    mask : image shape, bool
    model_map : image shape, the Unet's prediction ŷ in [0, 1]
    beta : float in [0, 1], default 0.5
        Weight of the unsupervised map (1 = cDDPM alone, 0 = Unet alone).
    sigma : float, default 1.0
        SSIM window (kernel size 9), as :func:`brainuad.scoring.ssim.ssim`.
    median : int, default 5
        Median filter of x̃ (0 = none).
    data_range, dims, k1, k2, covariance, padding
        As :func:`brainuad.scoring.ssim.ssim` (the workflow passes config ``conventions``).

    Returns
    -------
    Tensor, image shape.
    """
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    m = mask.to(image.dtype)
    parts = torch.zeros_like(image)
    if beta > 0:
        x_tilde = ssim(image, recons, mask, sigma=sigma, data_range=data_range, dims=dims, k1=k1, k2=k2,
                       covariance=covariance, padding=padding)
        parts = parts + beta * median_filter(x_tilde, median) * m
    if beta < 1:
        parts = parts + (1.0 - beta) * model_map.to(image.dtype) * m
    return parts
