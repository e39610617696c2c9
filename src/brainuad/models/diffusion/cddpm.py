"""Context-conditioned DDPM (cDDPM, P8.3; method-spec §4.4): a ResNet context of the clean slice conditions the Unet."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .. import register
from ..encoder import ResNetEncoder
from .ddpm import DiffusionConfig, DiffusionModel


@dataclass(frozen=True)
class ContextEncoderConfig:
    """The cDDPM hyper-parameters that shape its context encoder (and the SSL pre-training's encoder).

    Attributes
    ----------
    context_dim : int
        d (thesis 128; the public code effectively 512).
    encoder_channels, encoder_blocks : sequence of int
        ResNet stage widths and basic blocks per stage.
    encoder_norm : {"batch", "group"}
    """

    context_dim: int = 128
    encoder_channels: Sequence[int] = (32, 64, 128, 256)
    encoder_blocks: Sequence[int] = (2, 2, 2, 2)
    encoder_norm: str = "batch"

    @classmethod
    def from_hparams(cls, hparams: dict) -> ContextEncoderConfig:
        """The fields found in a cDDPM ``hparams`` dict (defaults for the others; other keys ignored)."""
        return cls(**{f.name: hparams[f.name] for f in fields(cls) if f.name in hparams})

    def resnet_kwargs(self) -> dict:
        """:class:`~brainuad.models.encoder.ResNetEncoder` arguments (as stored in the pre-training checkpoint)."""
        return {"in_channels": 1, "channels": list(self.encoder_channels), "blocks": list(self.encoder_blocks),
                "context_dim": int(self.context_dim), "norm": self.encoder_norm}


@register("cddpm")
class ConditionedDDPM(DiffusionModel):
    """Context-conditioned DDPM.

    A ResNet encoder (:class:`brainuad.models.encoder.ResNetEncoder`) maps the CLEAN input slice (on
    the [0, 1] scale) to a context vector c in R^d; c is concatenated to the time embedding and every
    Unet residual block maps the concatenation with its own MLP to (gamma, beta) for FiLM. The encoder
    is trained jointly with the Unet. Otherwise as :class:`~brainuad.models.diffusion.ddpm.AnoDDPM`
    (whole-image noise, single step, ENS).

    Parameters
    ----------
    encoder_crop : float
        Fraction of the image AREA given to the encoder: the central box with sides scaled by
        ``sqrt(encoder_crop)`` is kept, the rest zeroed (1.0 = whole image). The thesis' conditioning
        experiment "crops the conditioning image at a given width of 50 % / 100 %"; this implements
        the area reading of 50 %.
    pretrained_encoder : str or Path, optional
        Checkpoint of the SSL pre-training (a dict with ``"encoder_state_dict"``), loaded into the
        encoder at construction. A missing file raises ``FileNotFoundError``.
    **hparams
        The :class:`ContextEncoderConfig` and :class:`~brainuad.models.diffusion.ddpm.DiffusionConfig`
        fields.
    """

    def __init__(self, encoder_crop=1.0, pretrained_encoder=None, **hparams):
        encoder = ContextEncoderConfig.from_hparams(hparams)
        common = {k: v for k, v in hparams.items() if k not in {f.name for f in fields(ContextEncoderConfig)}}
        super().__init__(DiffusionConfig(**common), cond_dim=int(encoder.context_dim))
        self.encoder = ResNetEncoder(**encoder.resnet_kwargs())
        if not 0.0 < float(encoder_crop) <= 1.0:
            raise ValueError(f"encoder_crop must lie in (0, 1], got {encoder_crop}")
        self.encoder_crop = float(encoder_crop)
        if pretrained_encoder is not None:
            self.load_encoder(pretrained_encoder)

    @staticmethod
    def encoder_hparams(hparams: dict) -> dict:
        """ResNetEncoder arguments of the encoder a cDDPM with ``hparams`` builds (what the SSL pre-training trains)."""
        return ContextEncoderConfig.from_hparams(hparams).resnet_kwargs()

    def load_encoder(self, path) -> None:
        """Load ``checkpoint["encoder_state_dict"]`` from ``path`` into the encoder."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained_encoder checkpoint not found: {path}")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or "encoder_state_dict" not in ckpt:
            raise KeyError(f"{path} has no 'encoder_state_dict' (expected a checkpoint of the SSL pre-training)")
        self.encoder.load_state_dict(ckpt["encoder_state_dict"])

    def crop_for_encoder(self, x: torch.Tensor) -> torch.Tensor:
        """Keep the central ``encoder_crop`` fraction of the area of x (B, 1, H, W), zero the rest."""
        if self.encoder_crop >= 1.0:
            return x
        h, w = x.shape[-2:]
        side = math.sqrt(self.encoder_crop)
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        r0, c0 = (h - ch) // 2, (w - cw) // 2
        out = torch.zeros_like(x)
        out[..., r0 : r0 + ch, c0 : c0 + cw] = x[..., r0 : r0 + ch, c0 : c0 + cw]
        return out

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """c = F_enc(crop(x)): (B, 1, H, W) in [0, 1] -> (B, context_dim)."""
        return self.encoder(self.crop_for_encoder(x))
