"""ResNet context encoder F_enc for the context-conditioned DDPM (cDDPM, P8.3 §3.2 / method-spec §4.4).

The thesis uses a "ResNet-backbone with a fully connected layer to match the target dimension of
c in R^d" (d = 128), a ResNet-50 in the public code (timm ``resnet50``, ``in_chans=1``,
``num_classes=cond_dim``), optionally pre-trained with SparK masked image modelling
(:mod:`brainuad.models.masked_autoencoder`).

This module is a smaller, configurable ResNet made of *basic* residual blocks (two 3x3 convolutions,
He et al. 2016) instead of ResNet-50 bottlenecks, so that it trains on the thesis' 96x96 slices in
reasonable time. Choices, and why:

* **Normalisation: BatchNorm** by default, because the public cDDPM code uses timm's ResNet-50, which
  is a BatchNorm ResNet. ``norm="group"`` (GroupNorm, 8 groups or fewer) is available for very small
  batches; it is not what the public code does.
* **Stem: 3x3 convolution, stride 1, no max-pool** ("CIFAR-style"). An ImageNet stem (7x7 stride 2 +
  max-pool) followed by four stages would reduce a 96x96 slice to 3x3. Here stage ``i > 0`` halves the
  resolution once, so the last-stage map has stride ``2 ** (len(channels) - 1)`` (8 for four stages;
  96x96 -> 12x12). SparK masks patches of exactly that stride, so the default masking patch of
  :func:`brainuad.models.masked_autoencoder.random_patch_mask` is 8 px.
* The last normalisation layer of every residual branch is zero-initialised (timm's
  ``zero_init_last=True``), so each block starts as the identity.
* Head: global average pool -> ``Linear(channels[-1], context_dim)`` -> c of shape (B, context_dim).

This is a plain ``nn.Module`` (not a registered reconstruction model); the cDDPM owns one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class BasicBlock(nn.Module):
    """Residual block ``relu(x' + norm(conv(relu(norm(conv(x))))))`` (He et al. 2016, "basic" block).

    Parameters
    ----------
    cin, cout : int
        Input / output channels.
    stride : int
        Stride of the first convolution (2 halves the resolution); the shortcut is then a strided
        1x1 convolution + norm, as in torchvision/timm ResNets.
    norm : {"batch", "group"}
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, cout)
        nn.init.zeros_(self.norm2.weight)  # zero_init_last: the block starts as the identity
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H / stride, W / stride)."""
        out = F.relu(self.norm1(self.conv1(x)), inplace=True)
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNetEncoder(nn.Module):
    """ResNet of basic blocks mapping a slice to a context vector c = F_enc(x_0).

    Parameters
    ----------
    in_channels : int
        Input channels (1 for a single MR contrast).
    channels : sequence of int
        Feature maps per stage (default ResNet-18/34 widths ``(32, 64, 128, 256)`` at half width).
    blocks : sequence of int
        Basic blocks per stage (``(2, 2, 2, 2)`` = ResNet-18 layout); same length as ``channels``.
    context_dim : int
        Size d of the context vector (128 in P8.3).
    norm : {"batch", "group"}
        Normalisation layer (BatchNorm as in the public code's timm ResNet; see module docstring).

    Attributes
    ----------
    downsample_factor : int
        Stride of the last-stage feature map, ``2 ** (len(channels) - 1)``.
    out_channels : int
        Channels of the last-stage feature map (``channels[-1]``).

    Notes
    -----
    Input slices must have H and W divisible by ``downsample_factor`` for :meth:`feature_maps` to
    tile the image exactly (the pooled context vector works for any size).
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128, 256),
                 blocks: Sequence[int] = (2, 2, 2, 2), context_dim: int = 128, norm: str = "batch"):
        super().__init__()
        channels = [int(c) for c in channels]
        blocks = [int(b) for b in blocks]
        if len(channels) != len(blocks) or not channels:
            raise ValueError(f"channels {channels} and blocks {blocks} must be non-empty and of equal length")
        if any(b < 1 for b in blocks):
            raise ValueError(f"every stage needs at least one block, got blocks={blocks}")
        self.in_channels = int(in_channels)
        self.context_dim = int(context_dim)
        self.out_channels = channels[-1]
        self.downsample_factor = 2 ** (len(channels) - 1)
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, channels[0], 3, padding=1, bias=False),
            _norm(norm, channels[0]),
            nn.ReLU(inplace=True),
        )
        stages, cin = [], channels[0]
        for i, (cout, n) in enumerate(zip(channels, blocks)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(cin, cout, stride, norm)] + [BasicBlock(cout, cout, 1, norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(channels[-1], self.context_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage feature map.

        Parameters
        ----------
        x : Tensor (B, in_channels, H, W)

        Returns
        -------
        Tensor (B, channels[-1], H / downsample_factor, W / downsample_factor)
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> context c of shape (B, context_dim)."""
        return self.fc(self.feature_maps(x).mean(dim=(2, 3)))
