"""Pre-processing options: the config's ``preprocess`` section as a frozen dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from brainuad.data.preprocess.skull_strip import skull_strip_settings

__all__ = [
    "DEFAULT_MAX_VOXEL_ANISOTROPY",
    "DEFAULT_MIN_NONZERO_FRACTION",
    "DEFAULT_MIN_REGISTRATION_SIMILARITY",
    "DEFAULT_N4_OPTIONS",
    "DEFAULT_REG_ITERATIONS",
    "DEFAULT_REG_SAMPLING_RATE",
    "DEFAULT_REG_SHRINK_FACTORS",
    "DEFAULT_REG_SMOOTHING_SIGMAS",
    "PreprocessOptions",
]

#: Affine registration schedule (multi-resolution levels, coarse to fine).
#: ANTs' defaults (2100x1200x1200x10 at shrink 6x4x2x1) are meant for 1 mm
#: images and take ~10x longer; at 2 mm this schedule reaches the same
#: optimum (mean point error ~0.3 mm on synthetic 8-15 deg / 10 % / 12 mm cases).
DEFAULT_REG_ITERATIONS: tuple[int, ...] = (100, 50, 10)
DEFAULT_REG_SHRINK_FACTORS: tuple[int, ...] = (4, 2, 1)
DEFAULT_REG_SMOOTHING_SIGMAS: tuple[float, ...] = (2, 1, 0)
#: Fraction of the (masked) template voxels sampled by the Mattes MI metric.
DEFAULT_REG_SAMPLING_RATE = 0.1

#: Acceptance floors / ceilings of a subject (see :mod:`brainuad.data.preprocess.acceptance`). |r| with
#: the template (``benchmarks/registration_similarity.py``), with the rigid -> affine registration of
#: :func:`~brainuad.data.preprocess.ants_tools.register_affine`: every demo phantom scan 0.56-0.91 (48 scans;
#: the one-stage affine left three T2 scans at 0.001-0.11), the smoke cohort 0.50-0.81 (12 scans); failures: scans
#: with int16 spikes 0.006-0.19, a single non-zero voxel 0.0005, 19 mm slices 0.049, pure noise 0.002.
#: The phantom's thick-slice subjects have 1 x 1 x 4 mm voxels (ratio 4); a skull-stripped brain fills
#: about 10 % of a 1 mm head field of view.
DEFAULT_MIN_REGISTRATION_SIMILARITY = 0.3
DEFAULT_MAX_VOXEL_ANISOTROPY = 8.0
DEFAULT_MIN_NONZERO_FRACTION = 0.01

#: Keyword arguments for :func:`ants.n4_bias_field_correction`; any can be
#: overridden through ``n4_options``. At 2 mm the cost is dominated by the
#: number of iterations rather than voxels; 3 x 10 iterations at shrink 4
#: correct a 0.75-1.30 bias on the 2 mm MNI template about as well as
#: 3 x 50 (white-matter coefficient of variation 0.103 -> 0.034 vs 0.033;
#: unbiased 0.027) in a sixth of the time (0.6 s vs 4 s on one slow core).
DEFAULT_N4_OPTIONS: Mapping[str, object] = {
    "shrink_factor": 4,
    "convergence": {"iters": [10, 10, 10], "tol": 1e-6},
    "spline_param": None,
}

_SEQUENCE_FIELDS = ("reg_iterations", "reg_shrink_factors", "reg_smoothing_sigmas", "crop_pad", "percentiles")


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """How every subject of a dataset is pre-processed (the config's ``preprocess`` section).

    The defaults are those of ``config/config.yaml`` (2 mm working grid, 64 x 64 x 32 outputs at
    3 mm); the keys are explained in ``config/README.md``. Sequences are stored as tuples.

    Attributes
    ----------
    spacing_mm : float
        Isotropic working resolution (template grid).
    template : "mni152" or path
        Registration target; ``"mni152"`` = nilearn's MNI152 2009 T1 template and brain mask,
        otherwise a template image whose brain mask is ``template_mask``.
    template_mask : str, Path or None
        Brain mask of a user template.
    registration : str
        ``type_of_transform`` for :func:`ants.registration`; ``"none"`` treats every image as
        already in template space.
    reg_iterations, reg_shrink_factors, reg_smoothing_sigmas : tuples of equal length
        Multi-resolution schedule of the linear registration (sigmas in voxels).
    reg_sampling_rate : float
        Fraction of template voxels (inside the dilated brain mask) sampled by Mattes MI.
    n4 : bool
        Run N4 bias-field correction inside the brain mask.
    n4_options : mapping or None
        Overrides of :data:`DEFAULT_N4_OPTIONS`.
    crop_pad : (3,) ints
        Box (RAS axis order) at ``spacing_mm`` centred on the brain mask's bounding box.
    percentiles : (low, high)
        Intensity percentiles inside the mask mapped to 0 and 1.
    downsample : float
        Downsampling factor after normalisation (may be non-integer).
    slice_crop : int
        Axial slices removed at the top and at the bottom after downsampling.
    skull_strip : dict
        ``{"method": ..., "command": ...}``; given as ``"template"``, ``"none"``, ``"hd-bet"`` or
        a mapping and normalised by :func:`~brainuad.data.preprocess.skull_strip_settings`
        (which raises ``ValueError`` for a bad value).
    min_registration_similarity : float
        A registered subject whose |Pearson r| with the template inside its brain mask (the QC
        column ``registration_similarity``) is below this is unusable (registration failed, or not a
        brain image); 0 accepts every subject.
    max_voxel_anisotropy : float
        Largest accepted ratio of the raw image's largest to smallest voxel edge.
    min_nonzero_fraction : float
        Smallest accepted fraction of non-zero voxels in the raw image (below: almost empty).
    """

    spacing_mm: float = 2.0
    template: str | Path = "mni152"
    template_mask: str | Path | None = None
    registration: str = "Affine"
    reg_iterations: tuple[int, ...] = DEFAULT_REG_ITERATIONS
    reg_shrink_factors: tuple[int, ...] = DEFAULT_REG_SHRINK_FACTORS
    reg_smoothing_sigmas: tuple[float, ...] = DEFAULT_REG_SMOOTHING_SIGMAS
    reg_sampling_rate: float = DEFAULT_REG_SAMPLING_RATE
    n4: bool = True
    n4_options: Mapping[str, object] | None = None
    crop_pad: tuple[int, int, int] = (96, 96, 72)
    percentiles: tuple[float, float] = (1, 99)
    downsample: float = 1.5
    slice_crop: int = 8
    skull_strip: str | Mapping[str, object] | None = "template"
    min_registration_similarity: float = DEFAULT_MIN_REGISTRATION_SIMILARITY
    max_voxel_anisotropy: float = DEFAULT_MAX_VOXEL_ANISOTROPY
    min_nonzero_fraction: float = DEFAULT_MIN_NONZERO_FRACTION

    def __post_init__(self) -> None:
        for name in _SEQUENCE_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "skull_strip", skull_strip_settings(self.skull_strip))

    @classmethod
    def from_config(cls, section: Mapping[str, object]) -> PreprocessOptions:
        """Options from a ``preprocess`` config section (with any per-source overrides merged in).

        Parameters
        ----------
        section : mapping
            Keys are field names of this class; a key set to None (YAML ``null``) takes its default.

        Raises
        ------
        ValueError
            A key that is not an option, naming it and the known options; a bad ``skull_strip``.
        """
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValueError(f"unknown preprocess option(s) {', '.join(map(repr, unknown))}; "
                             f"known options: {', '.join(known)}")
        return cls(**{key: value for key, value in section.items() if value is not None})

    @property
    def registers(self) -> bool:
        """Whether images that are not already in template space are registered to the template."""
        return str(self.registration).lower() != "none"
