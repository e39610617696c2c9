"""Self-supervised baselines trained on synthetic anomalies (thesis Table 4.6 block II, method-spec §4.8):
``draem_net`` (DRAEM), ``pii`` (Poisson image interpolation) and ``fpi`` (foreign patch interpolation).

All three are map-producing models (``produces = "map"``) on axial slices (B, 1, H, W): they train on the
healthy training slices, corrupt every batch with synthetic anomalies of :mod:`brainuad.data.synthetic`
inside the brain (the voxels > 0 of the skull-stripped, [0, 1]-normalised slice) and learn to segment
them; :meth:`anomaly_map` is the network's prediction inside the brain mask.

References and deviations
-------------------------
**DRAEM** -- Zavrtanik, Kristan, Skocaj, "DRAEM -- A discriminatively trained reconstruction embedding for
surface anomaly detection", ICCV 2021. A reconstructive sub-network (encoder-decoder without skip
connections) maps the corrupted image back to the clean one (loss ``l2 + (1 - SSIM)``, Gaussian SSIM
window 11 x 11, sigma 1.5); a discriminative sub-network (Unet with skips) segments the anomaly from the channel-wise
concatenation of the corrupted input and its reconstruction (focal loss, gamma 2). The anomaly map is the
discriminative output. Deviations from the paper / its public code:

* anomalies are the brain-MRI DRAEM variant of SADM (:func:`brainuad.data.synthetic.draem_anomaly`: Perlin
  mask inside the brain, intensity augmentations of the slice itself instead of DTD textures, opacity
  ``gamma ~ U[0.2, 1]``); ``p_anomaly`` (0.5, DRAEM's anomaly-free half of the batches) per sample;
* one sigmoid logit and a binary focal loss (:func:`binary_focal_loss`) instead of a two-class softmax;
  SSIM with reflect padding (:func:`ssim_loss`) instead of a valid-only window;
* the networks use the layout of MONAI's ``BasicUNet`` (two 3x3 conv + GroupNorm + LeakyReLU per level;
  :class:`Unet2d`) with configurable widths (paper: reconstructive base width 128, discriminative 64, 4 to
  6 levels) and batch normalisation replaced by GroupNorm;
* the image-level score (max of the 21 x 21 averaged map) is not used: evaluation is voxel-wise.

**PII** -- Tan, Hou, Batten, Qiu, Kainz, "Detecting outliers with Poisson image interpolation", MICCAI 2021.
**FPI** -- Tan, Hou, Batten, Qiu, Kainz, "Detecting outliers with foreign patch interpolation", MELBA 2022.
A Unet regresses the per-voxel interpolation factor of the synthetic patch (:func:`~brainuad.data.synthetic.
pii_anomaly` / :func:`~brainuad.data.synthetic.fpi_anomaly`: ``alpha`` inside the patch, 0 elsewhere) with
binary cross-entropy against the soft target; the anomaly map is its sigmoid output. Deviations: patches
are ellipses inside the brain (not rectangles over the whole image); the foreign patch comes from the next
slice of the batch at the same location; PII uses the plain interpolated gradient field (no mixed
gradients); the Unet is :class:`Unet2d` of this module rather than the papers' wide ResNet-style Unet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import synthetic
from . import register
from .diffusion.unet import num_groups


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by GroupNorm and LeakyReLU(0.1) (MONAI ``TwoConv`` layout)."""
    g = num_groups(cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(g, cout), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(g, cout), nn.LeakyReLU(0.1, inplace=True))


class Unet2d(nn.Module):
    """2D Unet (or, with ``skips=False``, an encoder-decoder) in the layout of MONAI's ``BasicUNet``.

    Two 3x3 conv + GroupNorm + LeakyReLU per level, 2x2 max-pooling down, 2x2 transposed convolution up,
    encoder features concatenated before each decoder block (``skips``), 1x1 output convolution. Written with
    plain ``torch.nn`` instead of importing MONAI's blocks: importing MONAI costs 6.5 s CPU per job
    (measured: 9.3 s vs 2.9 s for ``import torch``), i.e. about half of this model's demo budget.

    Parameters
    ----------
    in_channels, out_channels : int
    channels : sequence of int
        Feature maps per level; the input size must be divisible by ``2 ** (len(channels) - 1)``.
    skips : bool
        Concatenate encoder features in the decoder (Unet) or not (DRAEM's reconstructive sub-network).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], skips: bool = True):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {channels}")
        self.skips = bool(skips)
        self.factor = 2 ** (len(channels) - 1)
        self.inp = _conv_block(in_channels, channels[0])
        self.down = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), _conv_block(a, b))
                                  for a, b in zip(channels[:-1], channels[1:]))
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(channels[:-1], channels[1:]))
        self.up = nn.ModuleList(_conv_block(2 * a if skips else a, a) for a in channels[:-1])
        self.out = nn.Conv2d(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"slice size {tuple(x.shape[-2:])} must be divisible by {self.factor} "
                             "(2 ** (len(channels) - 1))")
        feats = [self.inp(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        h = feats.pop()
        for upsample, up in zip(reversed(self.upsample), reversed(self.up)):
            h = upsample(h)
            skip = feats.pop()
            h = up(torch.cat([skip, h], dim=1) if self.skips else h)
        return self.out(h)


def binary_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss (Lin et al. 2017) of sigmoid logits: ``(1 - p_t) ** gamma * BCE``.

    Parameters
    ----------
    logits, target : Tensor, same shape; target in [0, 1]
    gamma : float
        Focusing parameter (0 = binary cross-entropy).

    Returns
    -------
    Tensor (): equals MONAI ``FocalLoss(gamma=gamma)`` (sigmoid, no alpha) for binary targets.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    return ((1 - p_t).clamp_min(0) ** gamma * bce).mean()


def ssim_loss(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """``1 - mean SSIM`` (Wang et al. 2004) of (B, C, H, W) images in [0, 1], differentiable.

    Gaussian window ``sigma`` 1.5, ``radius`` 5 (DRAEM's 11 x 11 window), separable convolution with torch
    reflect padding, Gaussian-weighted (population) moments, K1 = 0.01, K2 = 0.03 -- equal to
    :func:`brainuad.scoring.ssim.ssim_map` with ``padding="mirror"`` (whose filter is not differentiable).
    """
    x, y = x.float(), y.float()
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    kh, kw = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(z):
        z = F.pad(z, (radius, radius, radius, radius), mode="reflect")
        return F.conv2d(F.conv2d(z, kh, groups=c), kw, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return 1.0 - ssim.mean()


def _check_size(image_size, *channel_lists) -> tuple[int, int]:
    """(H, W) of the slices; each divisible by 2 ** (levels - 1) of every network."""
    h, w = (int(s) for s in image_size)
    for channels in channel_lists:
        factor = 2 ** (len(channels) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image_size {[h, w]} must be divisible by 2**(len(channels) - 1) = {factor}")
    return h, w


def _brain(batch: torch.Tensor) -> torch.Tensor:
    """Brain mask of skull-stripped [0, 1] slices: the voxels > 0."""
    return batch > 0


@register("draem_net")
class DraemNet(nn.Module):
    """DRAEM (Zavrtanik et al. 2021) on axial slices; see the module docstring for the deviations.

    Parameters
    ----------
    image_size : (int, int)
        Slice size (H, W).
    recon_channels : sequence of int
        Widths of the reconstructive encoder-decoder (no skips).
    seg_channels : sequence of int
        Widths of the discriminative Unet.
    ssim_weight : float
        Weight of ``1 - SSIM`` in the reconstruction loss (DRAEM: 1).
    focal_gamma : float
        Focal-loss focusing parameter (DRAEM: 2).
    p_anomaly : float
        Probability that a training slice gets an anomaly (DRAEM: 0.5).
    anomaly : dict
        Keyword arguments of :func:`brainuad.data.synthetic.draem_anomaly` (``gamma_range``,
        ``threshold_range``, ``scale_exponents``, ``source``, ...).
    """

    input_dims = 2
    trainable = True
    produces = "map"
    random_device = "cpu"

    def __init__(self, image_size: Sequence[int] = (96, 96), recon_channels: Sequence[int] = (128, 256, 512, 512),
                 seg_channels: Sequence[int] = (64, 128, 256, 512), ssim_weight: float = 1.0, focal_gamma: float = 2.0,
                 p_anomaly: float = 0.5, anomaly: dict | None = None):
        super().__init__()
        self.image_size = _check_size(image_size, recon_channels, seg_channels)
        self.reconstructive = Unet2d(1, 1, recon_channels, skips=False)
        self.discriminative = Unet2d(2, 1, seg_channels, skips=True)
        self.ssim_weight = float(ssim_weight)
        self.p_anomaly = float(p_anomaly)
        self.anomaly = dict(anomaly or {})
        self.anomaly.pop("p_anomaly", None)
        self.focal_gamma = float(focal_gamma)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) -> (reconstruction (B, 1, H, W), segmentation logits (B, 1, H, W))."""
        rec = self.reconstructive(x)
        return rec, self.discriminative(torch.cat([x, rec], dim=1))

    def corrupt(self, batch: torch.Tensor, generator: torch.Generator | None = None):
        """(corrupted batch (B, 1, H, W), anomaly mask (B, 1, H, W) float)."""
        syn, mask = synthetic.draem_anomaly(batch, _brain(batch), generator, p_anomaly=self.p_anomaly, **self.anomaly)
        return syn, mask.to(batch.dtype)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``l2(rec, x) + ssim_weight (1 - SSIM(rec, x)) + focal(seg, M)`` on a DRAEM-corrupted batch."""
        syn, mask = self.corrupt(batch, generator)
        rec, logits = self(syn)
        l_rec = F.mse_loss(rec, batch) + self.ssim_weight * ssim_loss(rec, batch)
        return l_rec + binary_focal_loss(logits.float(), mask.float(), self.focal_gamma)

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> sigmoid of the discriminative output, zero outside ``mask``, in [0, 1]."""
        _, logits = self(x)
        return torch.sigmoid(logits.float()) * mask.to(torch.float32)


class InterpolationUnet(nn.Module):
    """Unet regressing the interpolation factor of PII / FPI patches (base class of ``pii`` and ``fpi``).

    Parameters
    ----------
    image_size : (int, int)
        Slice size (H, W).
    channels : sequence of int
        Unet widths per level.
    anomaly : dict
        Keyword arguments of the anomaly function (``alpha_range``, ``size_range``; PII: ``cg_iterations``).
    """

    input_dims = 2
    trainable = True
    produces = "map"
    random_device = "cpu"
    kind = ""

    def __init__(self, image_size: Sequence[int] = (96, 96), channels: Sequence[int] = (64, 128, 256, 512),
                 anomaly: dict | None = None):
        super().__init__()
        self.image_size = _check_size(image_size, channels)
        self.unet = Unet2d(1, 1, channels, skips=True)
        self.anomaly = dict(anomaly or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> logits (B, 1, H, W)."""
        return self.unet(x)

    def corrupt(self, batch: torch.Tensor, generator: torch.Generator | None = None):
        """(corrupted batch, interpolation-factor target (B, 1, H, W) float)."""
        syn, target = synthetic.make_anomaly(self.kind, batch, _brain(batch), generator, **self.anomaly)
        return syn, target.to(batch.dtype)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary cross-entropy of the logits against the soft target ``alpha`` (Tan et al.)."""
        syn, target = self.corrupt(batch, generator)
        return F.binary_cross_entropy_with_logits(self(syn).float(), target.float())

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> predicted interpolation factor in [0, 1], zero outside ``mask``."""
        return torch.sigmoid(self(x).float()) * mask.to(torch.float32)


@register("pii")
class PoissonInterpolationNet(InterpolationUnet):
    """PII (Tan et al., MICCAI 2021): Unet trained on Poisson-interpolated foreign patches."""

    kind = "pii"


@register("fpi")
class ForeignPatchNet(InterpolationUnet):
    """FPI (Tan et al., MELBA 2022): Unet trained on linearly interpolated foreign patches."""

    kind = "fpi"
