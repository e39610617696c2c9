"""Denoising diffusion models for reconstruction-based UAD: ``anoddpm``, ``pddpm`` and ``cddpm``.

``schedule`` (beta schedules, forward process), ``unet`` (the FiLM-conditioned x0-predicting Unet),
``ddpm`` (:class:`DiffusionConfig`, the shared :class:`DiffusionModel`, AnoDDPM), ``pddpm`` and
``cddpm``. Hyper-parameter keys: config/README.md (``models``). Exports are lazy (:mod:`brainuad.lazy`).
"""

from ...lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "cddpm": ["ConditionedDDPM", "ContextEncoderConfig"],
    "ddpm": ["AnoDDPM", "DiffusionConfig", "DiffusionModel"],
    "pddpm": ["PatchedDDPM", "grid_starts", "patch_masks", "stitch_patches"],
    "schedule": ["DiffusionSchedule", "cosine_betas", "linear_betas"],
    "unet": ["DenoisingUnet"],
})
