"""Denoising diffusion models for reconstruction-based UAD: ``anoddpm``, ``pddpm`` and ``cddpm``.

``schedule`` (beta schedules, forward process), ``unet`` (the FiLM-conditioned x0-predicting Unet),
``ddpm`` (:class:`DiffusionConfig`, the shared :class:`DiffusionModel`, AnoDDPM), ``pddpm`` and
``cddpm``. Hyper-parameter keys: config/README.md (``models``).
"""

from .cddpm import ConditionedDDPM, ContextEncoderConfig
from .ddpm import AnoDDPM, DiffusionConfig, DiffusionModel
from .pddpm import PatchedDDPM, grid_starts, patch_masks, stitch_patches
from .schedule import DiffusionSchedule, cosine_betas, linear_betas
from .unet import DenoisingUnet

__all__ = ["AnoDDPM", "ConditionedDDPM", "ContextEncoderConfig", "DenoisingUnet", "DiffusionConfig", "DiffusionModel",
           "DiffusionSchedule", "PatchedDDPM", "cosine_betas", "grid_starts", "linear_betas", "patch_masks",
           "stitch_patches"]
