"""Patched DDPM (pDDPM, P8.2; method-spec §4.3): noise one square patch, keep the rest as context."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .. import register
from .ddpm import DiffusionConfig, DiffusionModel


def grid_starts(image_size: Sequence[int], patch_size: int, stride: int) -> torch.Tensor:
    """Top-left corners of the sliding-window grid that covers the image.

    Starts are ``0, stride, 2 * stride, ...`` per axis up to the first window that reaches the border,
    which is moved back to ``size - patch_size``; the grid is the product of both axes, row-major
    (2 x 2 for 48 px patches on 96 x 96, the public code's grid). This is MONAI's
    ``monai.data.utils.dense_patch_slices`` (tests/models/test_diffusion.py checks it against MONAI),
    written out because importing any MONAI module imports all of MONAI (seconds per job).

    Returns
    -------
    Tensor (K, 2) int64 of (row, col) starts.
    """
    axes = []
    for size in (int(s) for s in image_size):
        patch = min(size, int(patch_size) or size)
        if stride == 0:
            count = 1
        else:
            count = next((d + 1 for d in range(math.ceil(size / stride)) if d * stride + patch >= size), 1)
        axes.append([min(d * stride, size - patch) for d in range(count)])
    return torch.tensor([[r, c] for r in axes[0] for c in axes[1]], dtype=torch.long)


def patch_masks(starts: torch.Tensor, patch_size: int, image_size: Sequence[int]) -> torch.Tensor:
    """Binary masks of square patches.

    Parameters
    ----------
    starts : Tensor (K, 2) int64
        (row, col) top-left corners.
    patch_size : int
    image_size : (H, W)

    Returns
    -------
    Tensor (K, 1, H, W) float32 on starts' device, 1 inside the patch.
    """
    h, w = (int(s) for s in image_size)
    rows = torch.arange(h, device=starts.device)
    cols = torch.arange(w, device=starts.device)
    my = (rows[None] >= starts[:, :1]) & (rows[None] < starts[:, :1] + patch_size)  # (K, H)
    mx = (cols[None] >= starts[:, 1:]) & (cols[None] < starts[:, 1:] + patch_size)  # (K, W)
    return (my[:, :, None] & mx[:, None, :]).unsqueeze(1).float()


def stitch_patches(predictions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Stitch per-patch predictions into one image, averaging where patches overlap.

    Parameters
    ----------
    predictions : Tensor (..., K, B, C, H, W)
        Full-size prediction for each of the K patch positions; only the part inside patch k is used
        (leading dimensions, e.g. samples, are kept).
    masks : Tensor (K, 1, H, W)
        Patch masks (1 inside).

    Returns
    -------
    Tensor (..., B, C, H, W): ``sum_k M_k P_k / sum_k M_k``; 0 where no patch covers a pixel.
    """
    m = masks.unsqueeze(1).to(predictions.dtype)  # (K, 1, 1, H, W)
    total = (predictions * m).sum(dim=-5)
    count = m.sum(dim=0)
    return total / count.clamp_min(1.0)


@register("pddpm")
class PatchedDDPM(DiffusionModel):
    """Patched DDPM: the Unet denoises one noised patch given the clean rest of the slice.

    Training: one patch per slice — a random cell of the fixed sliding-window grid
    (``patch_sampling="grid"``, default) or a uniformly random position (``"random"``); the Unet sees
    ``x_t * M + x0 * (1 - M)`` and predicts x0. ``patch_loss="patch"`` (L_p, default) is the l1 of the
    prediction inside the patch, averaged over the whole image (the public code's ``inpaint`` loss);
    ``"full"`` (L_rec) is the l1 over the whole image.

    Test: for every grid position k (stride ``patch_stride``), noise only patch k (the same noise field
    for all positions), run one Unet step at t_test and keep the prediction inside patch k; the patches
    are stitched, averaging overlaps (:func:`stitch_patches`). All (position, slice) pairs are folded
    into the batch dimension and evaluated ``chunk_size`` images per Unet call.

    Parameters
    ----------
    patch_size : int or float
        Patch side in pixels (int), or as a fraction of the smaller image side (float <= 1). Default
        0.5 = the thesis' 48 px on 96 x 96.
    patch_stride : int or float, optional
        Grid stride (same units); default = ``patch_size`` (non-overlapping grid, as the public code).
    patch_sampling : {"grid", "random"}
    patch_loss : {"patch", "full"}
    chunk_size : int
        Images per Unet call at test time.
    **hparams
        The :class:`~brainuad.models.diffusion.ddpm.DiffusionConfig` fields.
    """

    def __init__(self, patch_size=0.5, patch_stride=None, patch_sampling="grid", patch_loss="patch", chunk_size=128,
                 **hparams):
        super().__init__(DiffusionConfig(**hparams))
        self.patch_size = self._pixels(patch_size, "patch_size")
        self.patch_stride = self.patch_size if patch_stride is None else self._pixels(patch_stride, "patch_stride")
        if patch_sampling not in ("grid", "random"):
            raise ValueError(f"patch_sampling must be 'grid' or 'random', got {patch_sampling!r}")
        if patch_loss not in ("patch", "full"):
            raise ValueError(f"patch_loss must be 'patch' or 'full', got {patch_loss!r}")
        self.patch_sampling, self.patch_loss = patch_sampling, patch_loss
        self.chunk_size = max(1, int(chunk_size))
        self.register_buffer("grid", grid_starts(self.image_size, self.patch_size, self.patch_stride), persistent=False)

    def _pixels(self, value, name: str) -> int:
        side = min(self.image_size)
        px = int(round(value * side)) if isinstance(value, float) and value <= 1.0 else int(value)
        if not 1 <= px <= side:
            raise ValueError(f"{name}={value} gives {px} px; it must lie in 1..{side} (the smaller image side)")
        return px

    def _training_loss(self, x0s, t, noise, ctx, generator) -> torch.Tensor:
        b, device = x0s.shape[0], x0s.device
        gdev = generator.device if generator is not None else device
        if self.patch_sampling == "grid":
            idx = torch.randint(0, self.grid.shape[0], (b,), generator=generator, device=gdev).to(device)
            starts = self.grid[idx]
        else:
            h, w = self.image_size
            r = torch.randint(0, h - self.patch_size + 1, (b,), generator=generator, device=gdev)
            c = torch.randint(0, w - self.patch_size + 1, (b,), generator=generator, device=gdev)
            starts = torch.stack([r, c], dim=1).to(device)
        m = patch_masks(starts, self.patch_size, self.image_size).to(x0s.dtype)  # (B, 1, H, W)
        x_in = self.q_sample(x0s, t, noise) * m + x0s * (1 - m)
        err = (self.denoise(x_in, t, ctx) - x0s).abs()
        return (err * m).mean() if self.patch_loss == "patch" else err.mean()

    def network_inputs(self, x0s: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """One input per grid position: patch k of x_t, the clean rest: (..., B, 1, H, W) -> (..., K, B, 1, H, W)."""
        m = patch_masks(self.grid, self.patch_size, self.image_size).to(x0s.dtype).unsqueeze(1)  # (K, 1, 1, H, W)
        return x_t.unsqueeze(-5) * m + x0s.unsqueeze(0) * (1 - m)

    def combine(self, preds: torch.Tensor) -> torch.Tensor:
        """Stitch the K per-position predictions (..., K, B, 1, H, W), averaging overlaps."""
        return stitch_patches(preds, patch_masks(self.grid, self.patch_size, self.image_size))
