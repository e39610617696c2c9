"""Masked image modelling objective that pre-trains the cDDPM context encoder (P8.3 §3.3, "SSL").

A dense-masking approximation of SparK (Tian et al., ICLR 2023): square patches of each healthy slice
are erased (:func:`random_patch_mask`, 65 % in P8.3), the :class:`~brainuad.models.encoder.ResNetEncoder`
sees the visible part with erased pixels set to 0, last-stage cells of erased patches are replaced by a
learned mask token, a light convolutional decoder reconstructs the slice, and the loss is the mean
squared error over the erased pixels (:func:`masked_mse`, SparK's ``loss_on_mask``; raw intensities, not
per-patch normalised, because background patches have zero variance). Where this differs from SparK
(dense instead of sparse convolutions, one-scale decoder): :class:`MaskedAutoencoder`. It is trained by
:func:`brainuad.training.fit` through :func:`brainuad.training.pretrain.pretrain_encoder`; the keys of
the ``pretrain`` config section are listed in config/README.md (``models``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoder import ResNetEncoder


def random_patch_mask(shape, ratio: float, patch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random square-patch masks with an exact number of erased patches per sample.

    Parameters
    ----------
    shape : (B, H, W) or (B, C, H, W)
        Batch shape; H and W must be divisible by ``patch``.
    ratio : float in [0, 1]
        Fraction of the ``(H / patch) * (W / patch)`` patches to erase; exactly
        ``round(ratio * n_patches)`` per sample.
    patch : int
        Patch side in pixels.
    generator : torch.Generator, optional (CPU)

    Returns
    -------
    BoolTensor (B, 1, H, W) on the CPU, True = erased. Samples get independent masks.
    """
    b, h, w = int(shape[0]), int(shape[-2]), int(shape[-1])
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"image size {(h, w)} must be divisible by the patch size {patch}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1], got {ratio}")
    gh, gw = h // patch, w // patch
    n = gh * gw
    k = int(round(ratio * n))
    order = torch.rand(b, n, generator=generator).argsort(dim=1)
    grid = torch.zeros(b, n, dtype=torch.bool)
    grid.scatter_(1, order[:, :k], True)
    grid = grid.view(b, 1, gh, gw)
    return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the erased pixels only.

    Parameters
    ----------
    pred, target : Tensor (B, 1, H, W)
    mask : BoolTensor (B, 1, H, W), True = erased (counted in the loss)

    Returns
    -------
    0-d Tensor: ``sum(mask * (pred - target)**2) / max(sum(mask), 1)``.
    """
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


class MaskedAutoencoder(nn.Module):
    """ResNet encoder + mask tokens + light convolutional decoder (dense SparK approximation).

    * Masking: erased pixels are set to 0 in the encoder input (SparK runs sparse convolutions that
      skip them at every layer; with dense convolutions visible features leak a few pixels into the
      erased area). The default ``patch`` (8 px) equals the stride of the default four-stage encoder,
      as in SparK (patch = encoder stride).
    * Mask tokens: last-stage cells whose patch is erased (at least half erased when ``patch``
      differs from the stride) are replaced by a learned embedding before decoding.
    * Decoder: on the last-stage map only (SparK: a UNet-like decoder over four scales): one
      ``ConvTranspose2d(4, stride 2) -> Conv3x3 -> BatchNorm -> ReLU`` block per factor 2, widths
      ``decoder_dim`` halved per block (min 16), then a 1x1 convolution to one channel.

    Parameters
    ----------
    encoder : dict
        :class:`~brainuad.models.encoder.ResNetEncoder` arguments.
    mask_ratio : float
        Fraction of erased patches in :meth:`loss` (0.65 in P8.3).
    patch : int
        Masking patch side in px; H and W must be divisible by it.
    decoder_dim : int
        Width of the first decoder block.

    Attributes
    ----------
    encoder : ResNetEncoder
        The part that is kept (its state dict initialises the cDDPM encoder).
    """

    input_dims = 2
    trainable = True
    random_device = "cpu"  # masks are drawn on the CPU, then moved to the model's device

    def __init__(self, encoder: dict, mask_ratio: float = 0.65, patch: int = 8, decoder_dim: int = 128):
        super().__init__()
        self.encoder = ResNetEncoder(**encoder)
        self.mask_ratio, self.patch = float(mask_ratio), int(patch)
        c = self.encoder.out_channels
        self.mask_token = nn.Parameter(torch.zeros(1, c, 1, 1))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        n_up = int(round(math.log2(self.encoder.downsample_factor)))
        blocks, cin = [], c
        for i in range(n_up):
            cout = max(16, int(decoder_dim) // (2 ** i))
            blocks += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1),
                       nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        if not blocks:
            blocks = [nn.Conv2d(cin, max(16, int(decoder_dim)), 3, padding=1), nn.ReLU(inplace=True)]
            cin = max(16, int(decoder_dim))
        self.decoder = nn.Sequential(*blocks, nn.Conv2d(cin, 1, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct slices from their visible part.

        Parameters
        ----------
        x : Tensor (B, 1, H, W)
        mask : BoolTensor (B, 1, H, W), True = erased

        Returns
        -------
        Tensor (B, 1, H, W) reconstruction (loss only on the erased pixels).
        """
        feats = self.encoder.feature_maps(x * (~mask).to(x.dtype))
        cell = F.adaptive_avg_pool2d(mask.to(feats.dtype), feats.shape[-2:]) >= 0.5
        feats = torch.where(cell, self.mask_token.to(feats.dtype), feats)
        return self.decoder(feats)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked reconstruction loss of healthy slices.

        Parameters
        ----------
        batch : Tensor (B, 1, H, W) in [0, 1]
        generator : torch.Generator, optional (CPU)
            Draws the patch masks (:func:`random_patch_mask`).

        Returns
        -------
        Tensor () — :func:`masked_mse` on the erased pixels, computed in float32.
        """
        mask = random_patch_mask(batch.shape, self.mask_ratio, self.patch, generator).to(batch.device)
        return masked_mse(self(batch, mask).float(), batch, mask)
