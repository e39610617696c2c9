"""Denoising autoencoder of Kascenas et al. (MIDL 2022, PMLR 172; thesis baseline "DAE"): ``dae``.

A Unet trained to reconstruct a healthy slice from a version corrupted by *coarse* noise; at test time
the slice goes in without noise and the anomaly map is the l1 residual (thesis Ch3.3, method-spec §4.8).

Noise (Kascenas et al.'s public ``denoising.py``, peers §2.5): Gaussian noise with std ``noise_std``
(0.2) drawn on a ``noise_res`` x ``noise_res`` grid (16 x 16 for their 128 x 128 slices), upsampled
bilinearly to the slice size, rolled by a random offset along both axes (so the coarse grid is not
aligned with the image) and applied to the foreground only (voxels > 0 of the skull-stripped slice).

Network: a Unet of ``len(channels)`` levels (their depth 4, ``wf = 6``: 64, 128, 256, 512) built from
MONAI's ``BasicUNet`` blocks (two 3x3 conv + GroupNorm + LeakyReLU per level, max-pool down,
transposed-convolution up with concatenated skips) and a 1x1 output convolution. Loss ``loss``:
``"l2"`` (mean squared error, default) or ``"l1"`` between the output and the clean slice; the thesis
does not restate it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import register
from .diffusion.unet import num_groups


def coarse_noise(shape: tuple[int, ...], noise_res: int, noise_std: float, generator: torch.Generator | None,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Upsampled low-resolution Gaussian noise, randomly rolled.

    Parameters
    ----------
    shape : (B, C, H, W)
    noise_res : int
        Side of the coarse noise grid.
    noise_std : float
    generator : torch.Generator, optional (on ``device``)

    Returns
    -------
    Tensor of ``shape``: ``roll(upsample_bilinear(N(0, noise_std^2) on (B, C, noise_res, noise_res)))``;
    one random roll (dy, dx) per call.
    """
    b, c, h, w = shape
    ns = torch.randn((b, c, noise_res, noise_res), generator=generator, device=device, dtype=dtype) * noise_std
    ns = F.interpolate(ns, size=(h, w), mode="bilinear", align_corners=False)
    dy, dx = (int(v) for v in torch.randint(0, max(h, w), (2,), generator=generator, device=device))
    return torch.roll(ns, shifts=(dy % h, dx % w), dims=(-2, -1))


@register("dae")
class DenoisingAE(torch.nn.Module):
    """Unet denoising autoencoder on axial slices (B, 1, H, W).

    Parameters
    ----------
    image_size : (int, int)
        Slice size; each divisible by ``2 ** (len(channels) - 1)``.
    channels : sequence of int
        Feature maps per Unet level.
    noise_res : int
        Side of the coarse noise grid (16 at 128 x 128 in Kascenas et al.).
    noise_std : float
        Std of the coarse noise (0.2).
    loss : {"l2", "l1"}
    """

    input_dims = 2
    trainable = True
    produces = "recon"
    random_device = "model"

    def __init__(self, image_size=(96, 96), channels=(64, 128, 256, 512), noise_res=16, noise_std=0.2, loss="l2"):
        super().__init__()
        h, w = (int(s) for s in image_size)
        factor = 2 ** (len(channels) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image_size {list(image_size)} must be divisible by 2**(len(channels) - 1) = {factor}")
        if loss not in ("l2", "l1"):
            raise ValueError(f"loss must be 'l2' or 'l1', got {loss!r}")
        self.image_size = (h, w)
        self.noise_res, self.noise_std, self.loss_type = int(noise_res), float(noise_std), loss
        channels = [int(c) for c in channels]
        norm = ("group", {"num_groups": num_groups(min(channels))})
        act = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
        # imported here: importing any MONAI module loads all of MONAI (~5 s), which only a DAE job should pay
        from monai.networks.nets.basic_unet import Down, TwoConv, UpCat

        self.inp = TwoConv(2, 1, channels[0], act, norm, True)
        self.down = torch.nn.ModuleList(Down(2, a, b, act, norm, True) for a, b in zip(channels[:-1], channels[1:]))
        self.up = torch.nn.ModuleList(UpCat(2, b, a, a, act, norm, True) for a, b in zip(channels[:-1], channels[1:]))
        self.out = torch.nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, 1, H, W)."""
        if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"expected slices of shape (B, 1, {self.image_size[0]}, {self.image_size[1]}), got {tuple(x.shape)}")
        skips = [self.inp(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in reversed(self.up):
            h = up(h, skips.pop())
        return self.out(h)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x + coarse noise on the foreground (x > 0)."""
        noise = coarse_noise(tuple(x.shape), self.noise_res, self.noise_std, generator, x.device, x.dtype)
        return x + noise * (x > 0).to(x.dtype)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean l2 (or l1) between Unet(corrupt(batch)) and the clean batch."""
        rec = self(self.corrupt(batch, generator))
        return F.mse_loss(rec, batch) if self.loss_type == "l2" else F.l1_loss(rec, batch)

    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """(B, 1, H, W) -> (samples, B, 1, H, W); no noise at test, so every sample is the same."""
        rec = self(x)
        return rec.unsqueeze(0).expand(samples, *rec.shape).clone()
