"""Reverse distillation (``rd``, Deng & Li, CVPR 2022) and encoder-decoder contrast (``edc``, Guo et al.,
IEEE TMI 43(3), 2024): a backbone encoder, a one-class bottleneck and a decoder that reconstructs the
encoder's multi-scale features; the anomaly map is the upsampled cosine distance between the two.

Shared parts (RD4AD's layout, generalised to any backbone of :mod:`brainuad.models.backbones`):

* **Encoder**: the backbone's feature maps ``f_1, f_2, f_3`` (strides s, 2s, 4s; channels c_1, c_2, c_3).
* **One-class bottleneck embedding (OCBE)**: multi-scale feature fusion, ``f_1`` through two and ``f_2``
  through one 3x3 stride-2 convolution (BatchNorm, ReLU) to ``f_3``'s grid and channels, concatenated with
  ``f_3`` (3 c_3 channels), then one ResNet bottleneck block of stride 2 (torchvision v1.5 layout) to
  ``2 c_3`` channels at stride 8s: the compact embedding.
* **Decoder**: mirrored stages of "de-bottleneck" blocks; the first block of each stage upsamples by 2
  with a 2x2 stride-2 transposed convolution (main path and shortcut), producing ``d_3, d_2, d_1`` with
  the encoder's shapes. Blocks per stage ``decoder_blocks`` (finest first; RD4AD's
  ``de_wide_resnet50_2`` has 3, 4, 6).
* **Anomaly map**: ``sum_k up(1 - cos(f_k, d_k))`` with the cosine over channels at every position,
  bilinear upsampling (``align_corners=True``) to the slice size, then Gaussian smoothing with
  ``smooth_sigma`` pixels (RD4AD's evaluation: sigma = 4 on 256 px images), zero outside the brain mask.
  Each term lies in [0, 2], so the map lies in [0, 2 K] for K scales.

Deviations common to both (from the papers / public code, hq-deng/RD4AD and guojiajeremy/EDC):

* slices of the thesis' 96 x 96 (demo: 64 x 64) instead of 256 x 256 crops; grey slices replicated to
  RGB for ImageNet backbones;
* the backbone comes from :mod:`brainuad.models.backbones`: ImageNet weights from a local file, or the
  in-domain SSL encoder (then strides 1, 2, 4 instead of 4, 8, 16);
* the bottleneck block has width 1 for every backbone (RD4AD's WRN-50 bottleneck is twice as wide);
* Adam with the configured lr and betas (thesis: lr 1e-4 for RD; RD4AD uses lr 5e-3, betas (0.5, 0.999));
* the backbone's BatchNorm layers keep their pre-trained statistics (eval mode) during training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .backbones import BackboneModelMixin, _Bottleneck, model_backbone, require_loaded


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class OneClassBottleneck(nn.Module):
    """RD4AD's OCBE: multi-scale feature fusion + one stride-2 bottleneck block.

    Parameters
    ----------
    channels : (c_1, c_2, c_3)
        Encoder channels at strides s, 2s, 4s.

    ``forward([f_1, f_2, f_3])`` -> embedding (B, 2 c_3, H_3 / 2, W_3 / 2).
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        c1, c2, c3 = (int(c) for c in channels)
        self.from1 = nn.Sequential(_conv_bn_relu(c1, c2), _conv_bn_relu(c2, c3))
        self.from2 = _conv_bn_relu(c2, c3)
        self.block = _Bottleneck(3 * c3, max(c3 // 2, 1), stride=2)
        self.out_channels = 4 * max(c3 // 2, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = feats
        return self.block(torch.cat([self.from1(f1), self.from2(f2), f3], dim=1))


class DeBottleneck(nn.Module):
    """Bottleneck block of the decoder: 1x1 -> 3x3 (or 2x2 stride-2 transposed when ``upsample``) -> 1x1,
    BatchNorm after each, residual shortcut (a transposed 2x2 convolution + BatchNorm when the shape changes)."""

    def __init__(self, cin: int, cout: int, upsample: bool):
        super().__init__()
        mid = max(cout // 4, 1)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = (nn.ConvTranspose2d(mid, mid, 2, 2, bias=False) if upsample
                      else nn.Conv2d(mid, mid, 3, 1, 1, bias=False))
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if upsample or cin != cout:
            conv = nn.ConvTranspose2d(cin, cout, 2, 2, bias=False) if upsample else nn.Conv2d(cin, cout, 1, bias=False)
            self.shortcut = nn.Sequential(conv, nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x), inplace=True)


class StudentDecoder(nn.Module):
    """Mirrored decoder: embedding (B, c_emb, H_3 / 2, W_3 / 2) -> [d_1, d_2, d_3] with the encoder's shapes.

    Parameters
    ----------
    in_channels : int
        Channels of the embedding.
    channels : (c_1, c_2, c_3)
    blocks : (n_1, n_2, n_3)
        Blocks per stage, finest first.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], blocks: Sequence[int] = (3, 4, 6)):
        super().__init__()
        stages, cin = [], int(in_channels)
        for c, n in zip(reversed([int(c) for c in channels]), reversed([int(b) for b in blocks])):
            stage = [DeBottleneck(cin, c, upsample=True)] + [DeBottleneck(c, c, upsample=False) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            cin = c
        self.stages = nn.ModuleList(stages)  # coarsest first

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], z
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out[::-1]


def global_cosine_loss(enc: list[torch.Tensor], dec: list[torch.Tensor], stop_grad: bool) -> torch.Tensor:
    """Sum over scales of the batch mean of ``1 - cos(flatten(f_k), flatten(d_k))`` (RD4AD's loss; each
    feature map is one vector per image). ``stop_grad``: no gradient through the encoder features (EDC)."""
    total = 0.0
    for f, d in zip(enc, dec):
        f = f.detach() if stop_grad else f
        total = total + (1 - F.cosine_similarity(f.flatten(1), d.flatten(1), dim=1)).mean()
    return total


def cosine_distance_map(enc: list[torch.Tensor], dec: list[torch.Tensor], size, smooth_sigma: float) -> torch.Tensor:
    """``sum_k up(1 - cos_c(f_k, d_k))`` at ``size`` (B, 1, H, W), Gaussian-smoothed with ``smooth_sigma`` px."""
    from ..scoring.ssim import gaussian_filter

    amap = 0.0
    for f, d in zip(enc, dec):
        dist = 1 - F.cosine_similarity(f.float(), d.float(), dim=1).unsqueeze(1)
        amap = amap + F.interpolate(dist, size=tuple(size), mode="bilinear", align_corners=True)
    if smooth_sigma > 0:
        amap = gaussian_filter(amap, float(smooth_sigma), dims=2)
    return amap


class _EncoderDecoder(BackboneModelMixin, nn.Module):
    """Backbone encoder + OCBE + student decoder; subclasses set the training objective."""

    input_dims = 2
    trainable = True
    produces = "map"
    random_device = "model"
    #: whether gradients reach the backbone (EDC) or it stays frozen (RD)
    train_backbone = False

    def __init__(self, backbone: dict, image_size=(96, 96), decoder_blocks=(3, 4, 6), smooth_sigma: float = 4.0,
                 in_channels: int = 1, pretrained_encoder=None):
        super().__init__()
        self.backbone_spec = dict(backbone)
        self.backbone, self.backbone_loaded = model_backbone(self.backbone_spec, pretrained_encoder,
                                                             in_channels=int(in_channels))
        channels = list(self.backbone.out_channels)
        if len(channels) != 3:
            raise ValueError(f"{type(self).__name__} needs a backbone with 3 layers, got {len(channels)} "
                             f"({self.backbone_spec})")
        h, w = (int(s) for s in image_size)
        factor = 2 * self.backbone.strides[-1]  # the OCBE halves the coarsest map once more
        if h % factor or w % factor:
            raise ValueError(f"image_size {image_size} must be divisible by {factor} (backbone stride "
                             f"{self.backbone.strides[-1]} x 2 for the bottleneck)")
        self.image_size = (h, w)
        self.smooth_sigma = float(smooth_sigma)
        self.bottleneck = OneClassBottleneck(channels)
        self.decoder = StudentDecoder(self.bottleneck.out_channels, channels, decoder_blocks)
        if not self.train_backbone:
            self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True):
        """Train mode everywhere except the backbone's BatchNorm statistics (kept pre-trained)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encoder and decoder features of slices x (B, 1, H, W): two lists of 3 maps, same shapes."""
        require_loaded(self)
        if self.train_backbone and torch.is_grad_enabled():
            enc = self.backbone(x)
        else:
            with torch.no_grad():
                enc = self.backbone(x)
        return enc, self.decoder(self.bottleneck(enc))

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x, mask: (B, 1, H, W) -> summed upsampled cosine distance (B, 1, H, W) in [0, 6], 0 outside mask."""
        enc, dec = self.features(x)
        amap = cosine_distance_map(enc, dec, x.shape[-2:], self.smooth_sigma)
        return (amap * mask.to(amap.dtype)).to(x.dtype)


@register("rd")
class ReverseDistillation(_EncoderDecoder):
    """``RD``: reverse distillation from a frozen teacher (Deng & Li, "Anomaly Detection via Reverse
    Distillation from One-Class Embedding", CVPR 2022).

    The teacher (the backbone, frozen) encodes a healthy slice at three scales; the trainable OCBE and the
    student decoder reconstruct the teacher's features from the compact embedding. Loss = sum over the
    three scales of ``1 - cos`` between the flattened teacher and student maps (RD4AD's ``loss_function``).
    Score = summed upsampled per-pixel cosine distance (module docstring), smoothed with sigma = 4.

    The paper's teacher is an ImageNet WideResNet-50-2 (``layer1..layer3``); the thesis describes it as
    "pre-trained on mixed data" and trains with lr 1e-4. Deviations: see the module docstring.

    Parameters
    ----------
    backbone : dict
        Teacher spec (:func:`brainuad.models.backbones.load_backbone`), 3 layers.
    image_size : (int, int)
        Slice size; divisible by twice the coarsest backbone stride.
    decoder_blocks : (int, int, int)
        De-bottleneck blocks per decoder stage, finest first.
    smooth_sigma : float
        Gaussian smoothing of the map, pixels (0 = none).
    in_channels : int
    pretrained_encoder : path, optional
        SSL checkpoint for a ``kind: ssl`` backbone (given by the workflow's ``pretrain_encoder`` stage).
    """

    train_backbone = False

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reverse-distillation loss of healthy slices (B, 1, H, W); ``generator`` is unused."""
        enc, dec = self.features(batch)
        return global_cosine_loss(enc, dec, stop_grad=True)


@register("edc")
class EncoderDecoderContrast(_EncoderDecoder):
    """``EDC``: encoder-decoder contrast (Guo, Lu, Jia, Liu, Shen, "Encoder-Decoder Contrast for
    Unsupervised Anomaly Detection in Medical Images", IEEE TMI 43(3), 2024).

    RD's layout, but the encoder is optimised end to end with the decoder in the medical domain: the
    contrastive term pulls the decoder's features towards the encoder's features of the same image,
    ``1 - cos(flatten(sg(f_k)), flatten(d_k))`` summed over scales, with a stop-gradient on the encoder
    side (as the public code's ``global_cosine``), so the encoder is trained only through the path
    encoder -> bottleneck -> decoder, which prevents the trivial collapse of both feature sets. The encoder
    gets its own learning rate ``encoder_lr`` (thesis 1e-5), the bottleneck and decoder the training lr
    (thesis 5e-5), through :meth:`param_groups`. Score = summed upsampled cosine distance between encoder
    and decoder features (module docstring).

    Deviations (besides the module docstring's): the loss is averaged over the scales (public code) rather
    than summed; the public code's gradient-shrinking "hard mining" variants are not implemented; the
    paper's encoder is an ImageNet ResNet-50 (``layer1..layer3``).

    Parameters
    ----------
    encoder_lr : float
        Learning rate of the backbone (the rest uses the training ``lr``).
    Others as :class:`ReverseDistillation`.
    """

    train_backbone = True

    def __init__(self, backbone: dict, encoder_lr: float = 1e-5, **kwargs):
        super().__init__(backbone, **kwargs)
        self.encoder_lr = float(encoder_lr)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: the backbone at ``encoder_lr``, bottleneck and decoder at ``lr``."""
        rest = [p for n, p in self.named_parameters() if not n.startswith("backbone.")]
        return [{"params": list(self.backbone.parameters()), "lr": self.encoder_lr}, {"params": rest, "lr": float(lr)}]

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encoder-decoder contrast loss of healthy slices (B, 1, H, W); ``generator`` is unused."""
        enc, dec = self.features(batch)
        return global_cosine_loss(enc, dec, stop_grad=True) / len(enc)
