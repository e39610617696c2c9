"""SADM Stage II (P8.6; method-spec §4.7): a segmentation Unet on top of a frozen Stage I diffusion model.

Stage I is a trained cDDPM (any registered reconstruction model works); it is loaded from its checkpoint,
frozen (``requires_grad = False``, kept in eval mode, so its batch-norm statistics never move) and
reconstructs every input with the ENS of ``noise_level`` (default t_test = [250, 500, 750]). Stage II
trains :class:`SegmentationUnet` with binary cross-entropy on anomalous slices:

* block II: DRAEM synthetic anomalies drawn on healthy slices (:func:`brainuad.data.synthetic.draem_anomaly`);
* block III: real lesions of a few subjects of a pathology set with their labels.

Variants (one trained network serves two table rows: the scoring decides)

============  ===========================  ====================================================
Unet input    network                      rows (scoring)
============  ===========================  ====================================================
x only        ``residual: false``          Unet (``native`` = prediction), SADM (``sadm``)
x and x - x̂   ``residual: true``           Unet_res (``native``), SADM_res (``sadm``)
============  ===========================  ====================================================

The model ``produces = "recon_map"``: the reconstruct job stores the Stage I reconstructions *and* the
Unet's sigmoid prediction, so the weighted score AS = β·x̃ + (1 − β)·ŷ (:mod:`brainuad.scoring.sadm`)
is a scoring parameter: changing β reruns scoring and evaluation only.

Difference to the public code (peers.md §1.5): there the Unet runs once per t_test on that level's
reconstruction and the predictions are averaged; here the Unet sees the residual of the ENS reconstruction
(the mean over the levels), the reconstruction the thesis text names ("reconstruction = average over t_test").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register

#: what the three channels of a Stage II training slice hold (see :meth:`StageTwo.loss`)
CHANNELS = ("image", "brain_mask", "label")


def _block(cin: int, cout: int, groups: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by GroupNorm and SiLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
    )


class SegmentationUnet(nn.Module):
    """Segmentation Unet (after Kascenas et al. 2022; P8.6-AppB.1): GroupNorm, SiLU, logits out.

    Parameters
    ----------
    channels : sequence of int
        Widths of the levels, top to bottom (thesis: 64, 128, 256 = 3 levels).
    groups : int
        GroupNorm groups (must divide every width).
    siamese : bool
        False: the input slice alone. True: the input and the signed residual are encoded *separately by the
        same encoder* and their features concatenated along the channels at every level (the decoder
        widths double), as SADM_res.

    Shapes
    ------
    forward(x, residual=None): x, residual (B, 1, H, W) with H, W divisible by 2 ** (levels - 1)
    -> logits (B, 1, H, W).
    """

    def __init__(self, channels: Sequence[int] = (64, 128, 256), groups: int = 8, siamese: bool = False):
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {channels}")
        for c in channels:
            if c % int(groups):
                raise ValueError(f"groups={groups} must divide every channel width, got {channels}")
        self.siamese = bool(siamese)
        self.levels = len(channels)
        widths = [1] + channels
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], groups) for i in range(self.levels))
        k = 2 if self.siamese else 1  # feature maps per level reaching the decoder
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(self.levels - 1, 0, -1):  # from the bottom level i to level i - 1
            self.up.append(nn.ConvTranspose2d(k * channels[i], k * channels[i - 1], 2, stride=2))
            self.dec.append(_block(2 * k * channels[i - 1], k * channels[i - 1], groups))
        self.head = nn.Conv2d(k * channels[0], 1, 1)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (self.levels - 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        f = self.downsample_factor
        if x.dim() != 4 or x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"expected (B, 1, H, W) with H, W divisible by {f}, got {tuple(x.shape)}")
        feats = self.encode(x)
        if self.siamese:
            if residual is None:
                raise ValueError("a siamese (residual) Unet needs the residual")
            feats = [torch.cat(pair, 1) for pair in zip(feats, self.encode(residual))]
        h = feats[-1]
        for up, dec, skip in zip(self.up, self.dec, reversed(feats[:-1])):
            h = dec(torch.cat([up(h), skip], 1))
        return self.head(h)


@register("sadm")
class StageTwo(nn.Module):
    """Stage II of SADM: :class:`SegmentationUnet` on top of a frozen Stage I reconstruction model.

    Parameters
    ----------
    stage1_arch : str
        Registry name of the Stage I model (``cddpm``).
    stage1_hparams : dict
        Its hyper-parameters (as trained).
    stage1_checkpoint : str or Path, optional
        ``model.pt`` of the trained Stage I model, loaded at construction (dropped when the Stage II
        checkpoint is rebuilt: its state dict already holds the frozen weights).
    noise_level : int or list of int, optional
        Stage I test-time noise level(s) (thesis: ENS [250, 500, 750], the Stage I model's
        ``reconstruct.noise_level``); None = the Stage I model's own ``t_test``.
    residual : bool
        Unet_res / SADM_res (True) or Unet / SADM (False; the Unet never sees the reconstruction, which is
        then computed at test time only, for the SADM score).
    channels, groups : see :class:`SegmentationUnet`
    synthetic : bool
        True (block II): :meth:`loss` draws DRAEM anomalies on the (healthy) slices it gets; False
        (block III): the slices carry real labels.
    gamma_range : (float, float)
        DRAEM blending opacity range (thesis U[0.2, 1]).
    image_size : ignored
        Accepted for the training script's default (the Unet is fully convolutional).
    """

    input_dims = 2
    trainable = True
    produces = "recon_map"
    random_device = "model"

    def __init__(self, stage1_arch: str = "cddpm", stage1_hparams: dict | None = None, stage1_checkpoint=None,
                 noise_level=None, residual: bool = True, channels: Sequence[int] = (64, 128, 256),
                 groups: int = 8, synthetic: bool = True, gamma_range: Sequence[float] = (0.2, 1.0),
                 image_size=None):
        super().__init__()
        from . import build

        self.stage1 = build(stage1_arch, **dict(stage1_hparams or {}))
        if getattr(self.stage1, "produces", None) != "recon":
            raise ValueError(f"stage1_arch {stage1_arch!r} must be a reconstruction model")
        if stage1_checkpoint is not None:
            self.load_stage1(stage1_checkpoint)
        for p in self.stage1.parameters():
            p.requires_grad_(False)
        self.stage1.eval()
        if noise_level is not None:
            noise_level = list(noise_level) if isinstance(noise_level, (list, tuple)) else int(noise_level)
        self.noise_level = noise_level
        self.residual = bool(residual)
        self.synthetic = bool(synthetic)
        self.gamma_range = tuple(float(g) for g in gamma_range)
        self.unet = SegmentationUnet(channels, groups, siamese=self.residual)

    def load_stage1(self, path) -> None:
        """Load the ``state_dict`` of a Stage I ``model.pt`` (written by :func:`brainuad.training.fit`)."""
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise KeyError(f"{path} is not a model checkpoint (no 'state_dict')")
        self.stage1.load_state_dict(ckpt["state_dict"])

    def train(self, mode: bool = True):
        """Train mode for the Unet only: Stage I stays in eval mode (frozen, batch-norm statistics included)."""
        super().train(mode)
        self.stage1.eval()
        return self

    # ---- Stage I ------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, noise_level=None, samples: int = 1,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Frozen Stage I reconstructions (S, B, 1, H, W) of x (B, 1, H, W); ``noise_level`` default: the model's."""
        level = self.noise_level if noise_level is None else noise_level
        return self.stage1.reconstruct(x, mask, noise_level=level, samples=samples, generator=generator)

    def segment(self, x: torch.Tensor, recon: torch.Tensor | None) -> torch.Tensor:
        """Unet logits (B, 1, H, W) of x, with the signed residual x - recon for the residual variant."""
        return self.unet(x, x - recon if self.residual else None)

    # ---- training -------------------------------------------------------------------------------

    def training_pair(self, batch: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) of one Stage II batch.

        ``batch``: (B, 3, H, W) or the loop's (B, 1, 3, H, W), channels :data:`CHANNELS`. Synthetic models
        draw DRAEM anomalies inside the brain mask (the label channel is ignored); otherwise the label is
        the target.
        """
        if batch.dim() == 5:
            batch = batch.flatten(1, 2)
        if batch.dim() != 4 or batch.shape[1] != len(CHANNELS):
            raise ValueError(f"Stage II batches are (B, {len(CHANNELS)}, H, W) = {CHANNELS}, got {tuple(batch.shape)}")
        image, brain, label = batch[:, :1], batch[:, 1:2] > 0.5, batch[:, 2:3]
        if self.synthetic:
            from ..data.synthetic import draem_anomaly

            image, label = draem_anomaly(image, brain, generator, gamma_range=self.gamma_range)
        return image, (label.to(image.dtype) > 0.5).to(image.dtype)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary cross-entropy of the Unet's prediction (sigmoid of the logits) against the anomaly mask.

        Parameters
        ----------
        batch : Tensor (B, 3, H, W) or (B, 1, 3, H, W)
            Image, brain mask and label per slice (:data:`CHANNELS`).
        generator : torch.Generator, optional
            Draws the synthetic anomalies and the Stage I noise.

        Returns
        -------
        Tensor ()
        """
        image, target = self.training_pair(batch, generator)
        recon = self.reconstruct(image, generator=generator)[0] if self.residual else None
        return F.binary_cross_entropy_with_logits(self.segment(image, recon), target)

    # ---- inference ------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct_and_map(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, noise_level=None,
                            samples: int = 1, generator: torch.Generator | None = None):
        """Stage I reconstructions and the Unet prediction of the same inputs.

        Returns
        -------
        (recons, prediction): Tensor (S, B, 1, H, W) and Tensor (B, 1, H, W) in [0, 1] (sigmoid; the
        residual variant uses the mean of the S reconstructions).
        """
        recons = self.reconstruct(x, mask, noise_level=noise_level, samples=samples, generator=generator)
        return recons, torch.sigmoid(self.segment(x, recons.mean(0)))

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The Unet prediction (B, 1, H, W) in [0, 1] (one Stage I reconstruction for the residual variant)."""
        return self.reconstruct_and_map(x, mask)[1]
