"""Phantom cohorts: synthetic *raw* brain MRI acquisitions built from the MNI152 template.

No real MRI can be downloaded where this project is tested, so the workflow can generate
a phantom cohort instead. Each subject is simulated from the tissue probability maps of
the MNI152 2009a template shipped with nilearn (GM, WM, brain mask; CSF is the brain mask
minus GM minus WM) and is made to look like a scanner acquisition rather than a
preprocessed template image, so that downstream preprocessing (affine registration back
to MNI, brain masking, N4 bias correction, intensity normalisation) does real work:

* tissue contrast with partial-volume mixing (T1: WM > GM > CSF; T2: CSF > GM > WM;
  optional FLAIR: GM > WM > CSF), per-subject intensity jitter and scanner gain;
* a synthetic head (extra-axial CSF, skull, scalp) around the brain, since the template
  itself is skull-stripped;
* a per-subject affine misalignment (rotation, scaling, translation) and a smooth
  non-linear deformation, in a scanner world frame centred on the isocentre;
* a smooth multiplicative bias field, Rician noise (Rayleigh background), optional
  thick-slice (anisotropic) acquisitions with slice-profile averaging;
* age and sex metadata with mild age-related atrophy (ventricles, cortical GM);
* four pathological cohorts with voxel labels: ``tumour`` (core + oedema with mass
  effect), ``ms`` (periventricular ellipsoids), ``stroke`` (cortical/subcortical
  territory in one hemisphere) and ``wmh`` (periventricular caps and rims).

All maps are built in template space (anatomy, atrophy, lesions), turned into one
noise-free intensity image per contrast by linear mixing of the class probabilities,
and resampled onto the subject grid in ONE pass: for every output voxel, world
coordinate -> inverse subject transform (affine, then displacement field, then mass
effect) -> template voxel coordinate -> :func:`scipy.ndimage.map_coordinates` (order 1
for intensities, order 0 for labels). Because the intensity model is linear in the
class probabilities, resampling the mixed image is identical to mixing resampled maps.

Everything is a deterministic function of ``(seed, cohort, subject index)``: every
subject draws from its own :class:`numpy.random.SeedSequence` ``(seed, cohort index,
subject index)``, split into one stream per simulation step, so adding subjects, adding
contrasts or switching one effect off (e.g. ``bias_strength=0``) leaves every other
random draw unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.orientations import axcodes2ornt
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..paths import PHANTOM_SUBJECT

__all__ = [
    "CLASS_INTENSITY",
    "COHORTS",
    "CONTRASTS",
    "PhantomConfig",
    "SubjectPhantom",
    "Template",
    "generate_cohort",
    "load_template",
    "simulate_subject",
    "subject_id",
]

COHORTS = ("healthy", "tumour", "ms", "stroke", "wmh")
CONTRASTS = ("t1", "t2", "flair")

#: Mean intensity of every tissue / lesion class per contrast, relative to
#: ``intensity_scale`` (before the per-subject gain and jitter). Lesion classes replace
#: the underlying tissue in proportion to their (soft) membership.
CLASS_INTENSITY = MappingProxyType(
    {
        "wm": MappingProxyType({"t1": 1.00, "t2": 0.40, "flair": 0.52}),
        "gm": MappingProxyType({"t1": 0.65, "t2": 0.55, "flair": 0.75}),
        "csf": MappingProxyType({"t1": 0.22, "t2": 1.00, "flair": 0.08}),
        "skull": MappingProxyType({"t1": 0.08, "t2": 0.06, "flair": 0.05}),
        "scalp": MappingProxyType({"t1": 0.95, "t2": 0.60, "flair": 0.75}),
        "tumour_core": MappingProxyType({"t1": 0.40, "t2": 0.85, "flair": 0.75}),
        "oedema": MappingProxyType({"t1": 0.55, "t2": 0.72, "flair": 1.00}),
        "ms": MappingProxyType({"t1": 0.75, "t2": 0.72, "flair": 1.00}),
        "stroke": MappingProxyType({"t1": 0.28, "t2": 0.92, "flair": 0.30}),
        "wmh": MappingProxyType({"t1": 0.90, "t2": 0.70, "flair": 1.05}),
    }
)
_TISSUES = ("wm", "gm", "csf", "skull", "scalp")

#: Contrasts derived from another one: ``name -> (base contrast, {class: table value})``. ``t1ce`` is the
#: subject's T1 with a gadolinium-enhanced (brighter than white matter) tumour core, the only class a
#: contrast agent changes here; it has its own bias field and noise (another acquisition). Derived
#: contrasts draw nothing from the ``contrast`` stream, so adding one changes no other image.
DERIVED_CONTRASTS = MappingProxyType({"t1ce": ("t1", MappingProxyType({"tumour_core": 1.45}))})

#: Independent random streams of one subject, in a fixed order (never reorder: it would
#: change every cohort generated so far; append new streams at the end).
_STREAMS = (
    "demographics", "acquisition", "geometry", "deformation", "anatomy", "lesions",
    "contrast", "bias_t1", "bias_t2", "bias_flair", "noise_t1", "noise_t2", "noise_flair",
    "bias_t1ce", "noise_t1ce",
)
_DEFORMATION_DCT_ORDER = 6  # cosines per axis of the displacement field (k = 0..5)
_BIAS_DCT_ORDER = 3  # cosines per axis of the log bias field (k = 0..2)
_NECK_PAD_MM = 40.0  # the template stops at z = -72 mm; the neck continues below
_MAX_LESION_TRIES = 20


# ----------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhantomConfig:
    """Every knob of the phantom generator, with its default.

    Ranges ``(low, high)`` are sampled uniformly per subject (per lesion for lesion
    sizes). Lists are accepted wherever tuples are (YAML configs give lists).

    Parameters
    ----------
    voxel_mm : (3,) float, default (2.0, 2.0, 2.0)
        Voxel size along the array axes of the acquired images.
    anisotropic_fraction : float, default 0.0
        Probability that a subject is acquired with thick slices (``anisotropic_mm``).
    anisotropic_mm : (3,) float, default (1.0, 1.0, 4.0)
        Voxel size of thick-slice subjects (array axes; with ``orientation="RAS"`` the
        third axis is axial). Thick voxels average the template over the slice profile.
    template_resolution : {1, 2}, default 2
        Resolution (mm) of the nilearn MNI152 maps the anatomy is sampled from.
    fov_mm : (3,) float, default (220, 240, 200)
        Field of view along the world axes (R-L, A-P, S-I), centred on the isocentre.
    age_range : (2,) float, default (20, 86)
        Ages are uniform in this range (years, one decimal).
    contrasts : tuple of str, default ("t1", "t2")
        Contrasts to write, any of :data:`CONTRASTS` or :data:`DERIVED_CONTRASTS` (``t1ce``).
    orientation : str, default "RAS"
        nibabel axis codes of the stored arrays (e.g. "LAS" for radiological storage).
    dtype : {"int16", "float32"}, default "int16"
        Stored data type of the images (rounded and clipped to int16 like a scanner).
    head : bool, default True
        Add extra-axial CSF, skull and scalp around the brain (False: skull-stripped).
    rotation_deg : float, default 10.0
        Head rotation about each world axis, uniform in +-rotation_deg.
    scaling : float, default 0.08
        Head size along each axis, uniform in 1 +- scaling.
    translation_mm : float, default 10.0
        Head position along each axis, uniform in +-translation_mm around the isocentre.
    deformation_mm : float, default 3.0
        Root-mean-square magnitude (mm) of the smooth non-linear displacement field.
    intensity_scale : float, default 800.0
        Intensity of a class with relative value 1 in :data:`CLASS_INTENSITY`.
    gain_range : (2,) float, default (0.8, 1.25)
        Per-subject scanner gain multiplying all intensities of a subject.
    intensity_jitter : float, default 0.05
        Relative standard deviation of every class mean, per subject and contrast.
    bias_strength : float, default 0.25
        Bias field amplitude: the multiplicative field spans [1/(1+s), 1+s] over the
        field of view (low-frequency cosine basis; 0 switches it off).
    noise_fraction : (2,) float, default (0.02, 0.04)
        Rician noise: standard deviation of each channel of the complex Gaussian noise,
        as a fraction of the subject's brightest brain tissue mean (WM in T1, CSF in T2,
        GM in FLAIR); (0, 0) switches noise off.
    age_atrophy : float, default 1.0
        Strength of the age effect (0: none): ventricles dilate by 0.35 mm and
        GM loses 1.5 % to CSF per decade above 20 years, times this factor.
    tumour_radius_mm : (2,) float, default (15, 30)
        Outer radius of the tumour (core + oedema) before mass effect.
    tumour_core_fraction : (2,) float, default (0.4, 0.7)
        Core radius as a fraction of the tumour radius.
    tumour_mass_effect : float, default 0.3
        Radial push of the surrounding tissue as a fraction of the core radius.
    ms_count : (2,) int, default (5, 30)
        Number of MS lesions (inclusive range).
    ms_radius_mm : (2,) float, default (1.5, 4.0)
        Long semi-axis of an MS lesion (short axes are 50-90 % of it), i.e. lesion
        diameters of about 3-8 mm, elongated away from the ventricles.
    ms_periventricular_mm : float, default 10.0
        MS lesion centres lie in WM at most this far from the lateral ventricles.
    stroke_radius_mm : (2,) float, default (10, 25)
        Semi-axes of the stroke territory (irregular ellipsoid near the cortex).
    wmh_cap_radius_mm : (2,) float, default (3, 9)
        Radius of the periventricular caps at the frontal and occipital horns.
    wmh_rim_mm : (2,) float, default (0, 5)
        Thickness of the periventricular rim (halo); rims thinner than one template
        voxel are not drawn (caps only).
    lesion_roughness : float, default 0.15
        Irregularity of tumour and stroke boundaries, as a fraction of their radius.
    """

    voxel_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    anisotropic_fraction: float = 0.0
    anisotropic_mm: tuple[float, float, float] = (1.0, 1.0, 4.0)
    template_resolution: int = 2
    fov_mm: tuple[float, float, float] = (220.0, 240.0, 200.0)
    age_range: tuple[float, float] = (20.0, 86.0)
    contrasts: tuple[str, ...] = ("t1", "t2")
    orientation: str = "RAS"
    dtype: str = "int16"
    head: bool = True
    rotation_deg: float = 10.0
    scaling: float = 0.08
    translation_mm: float = 10.0
    deformation_mm: float = 3.0
    intensity_scale: float = 800.0
    gain_range: tuple[float, float] = (0.8, 1.25)
    intensity_jitter: float = 0.05
    bias_strength: float = 0.25
    noise_fraction: tuple[float, float] = (0.02, 0.04)
    age_atrophy: float = 1.0
    tumour_radius_mm: tuple[float, float] = (15.0, 30.0)
    tumour_core_fraction: tuple[float, float] = (0.4, 0.7)
    tumour_mass_effect: float = 0.3
    ms_count: tuple[int, int] = (5, 30)
    ms_radius_mm: tuple[float, float] = (1.5, 4.0)
    ms_periventricular_mm: float = 10.0
    stroke_radius_mm: tuple[float, float] = (10.0, 25.0)
    wmh_cap_radius_mm: tuple[float, float] = (3.0, 9.0)
    wmh_rim_mm: tuple[float, float] = (0.0, 5.0)
    lesion_roughness: float = 0.15

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if isinstance(self.contrasts, str):
            object.__setattr__(self, "contrasts", (self.contrasts,))
        self._validate()

    def _validate(self):
        for name in ("voxel_mm", "anisotropic_mm", "fov_mm"):
            value = getattr(self, name)
            if len(value) != 3 or min(value) <= 0:
                raise ValueError(f"{name} must be three positive numbers, got {value!r}")
        ranges = ("age_range", "gain_range", "noise_fraction", "tumour_radius_mm",
                  "tumour_core_fraction", "ms_count", "ms_radius_mm", "stroke_radius_mm",
                  "wmh_cap_radius_mm", "wmh_rim_mm")
        for name in ranges:
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1] or value[0] < 0:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high, "
                                 f"got {value!r}")
        if not 0.0 <= self.anisotropic_fraction <= 1.0:
            raise ValueError(f"anisotropic_fraction must be in [0, 1], got {self.anisotropic_fraction}")
        if self.template_resolution not in (1, 2):
            raise ValueError(f"template_resolution must be 1 or 2, got {self.template_resolution}")
        allowed = CONTRASTS + tuple(DERIVED_CONTRASTS)
        unknown = [c for c in self.contrasts if c not in allowed]
        if unknown or not self.contrasts or len(set(self.contrasts)) != len(self.contrasts):
            raise ValueError(f"contrasts must be distinct values of {allowed}, got {self.contrasts!r}")
        if self.dtype not in ("int16", "float32"):
            raise ValueError(f"dtype must be 'int16' or 'float32', got {self.dtype!r}")
        try:
            ornt = axcodes2ornt(tuple(self.orientation))
        except Exception as exc:  # nibabel raises ValueError / KeyError on bad codes
            raise ValueError(f"orientation must be three nibabel axis codes such as 'RAS', "
                             f"got {self.orientation!r}") from exc
        if len(self.orientation) != 3 or np.isnan(ornt).any():
            raise ValueError(f"orientation must be three axis codes such as 'RAS', got {self.orientation!r}")
        if self.tumour_core_fraction[1] >= 1.0:
            raise ValueError("tumour_core_fraction must stay below 1 (the oedema surrounds the core)")
        if not 0.0 <= self.tumour_mass_effect < 1.0:
            raise ValueError("tumour_mass_effect must be in [0, 1)")
        if self.bias_strength < 0 or self.deformation_mm < 0 or self.intensity_jitter < 0:
            raise ValueError("bias_strength, deformation_mm and intensity_jitter must be >= 0")


# ----------------------------------------------------------------------------------------
# template
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Template:
    """MNI152 tissue maps and derived geometry on the (neck-padded) template grid.

    All arrays have the template grid shape ``(X, Y, Z)`` (99 x 117 x 115 at 2 mm: the
    nilearn grid plus :data:`_NECK_PAD_MM` of replicated bottom slices).

    Attributes
    ----------
    resolution : float
        Isotropic voxel size (mm).
    affine : (4, 4) ndarray
        Voxel index -> MNI mm.
    gm, wm, csf, brain : (X, Y, Z) float32
        Tissue probabilities; ``csf = clip(brain - gm - wm, 0, 1)``, ``brain`` is 0/1.
    depth_mm : (X, Y, Z) float32
        Distance (mm) inside the brain mask to its boundary (0 outside).
    outside_mm : (X, Y, Z) float32
        Distance (mm) outside the brain mask to the brain (0 inside).
    ventricles : (X, Y, Z) bool
        Lateral ventricles (largest deep CSF component).
    ventricle_mm : (X, Y, Z) float32
        Distance (mm) to the lateral ventricles (0 inside).
    horn_tips_mm : dict str -> (3,) ndarray
        MNI mm of the frontal and occipital horn tips, keys ``"frontal_left"``, ...
    centre_mm : (3,) ndarray
        Centroid of the brain mask (MNI mm).
    """

    resolution: float
    affine: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    depth_mm: np.ndarray
    outside_mm: np.ndarray
    ventricles: np.ndarray
    ventricle_mm: np.ndarray
    horn_tips_mm: dict
    centre_mm: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.gm.shape

    def axis_mm(self, axis: int) -> np.ndarray:
        """MNI mm of the voxel centres along one (axis-aligned) template axis, shape (n,)."""
        return self.affine[axis, axis] * np.arange(self.shape[axis]) + self.affine[axis, 3]

    def voxels_mm(self, flat_index: np.ndarray) -> np.ndarray:
        """MNI mm of flat voxel indices, shape (n, 3)."""
        ijk = np.stack(np.unravel_index(flat_index, self.shape), axis=1)
        return ijk * np.diag(self.affine)[:3] + self.affine[:3, 3]


@functools.lru_cache(maxsize=2)
def load_template(resolution: int = 2) -> Template:
    """Load (once per process) the nilearn MNI152 2009a maps and derive their geometry.

    Parameters
    ----------
    resolution : {1, 2}
        Template voxel size in mm.

    Returns
    -------
    Template
        Cached, read-only template (do not modify its arrays).
    """
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=resolution)
    affine = gm_img.affine.copy()
    if not np.allclose(affine[:3, :3], np.eye(3) * resolution):
        raise RuntimeError(f"unexpected MNI152 template affine:\n{affine}")
    brain = (datasets.load_mni152_brain_mask(resolution=resolution).get_fdata() > 0.5)
    gm = np.clip(gm_img.get_fdata(), 0, 1) * brain
    wm = np.clip(datasets.load_mni152_wm_template(resolution=resolution).get_fdata(), 0, 1) * brain
    excess = np.maximum(gm + wm, 1.0)  # a few voxels have gm + wm > 1
    gm, wm = gm / excess, wm / excess
    csf = np.clip(brain - gm - wm, 0, 1)

    pad = int(math.ceil(_NECK_PAD_MM / resolution))
    padding = ((0, 0), (0, 0), (pad, 0))
    gm, wm, csf, brain = (np.ascontiguousarray(np.pad(a, padding, mode="edge"), dtype=np.float32)
                          for a in (gm, wm, csf, brain))
    affine[2, 3] -= pad * resolution

    inside = brain > 0.5
    depth = ndimage.distance_transform_edt(inside, sampling=resolution).astype(np.float32)
    outside = ndimage.distance_transform_edt(~inside, sampling=resolution).astype(np.float32)
    ventricles = _find_lateral_ventricles(affine, csf, depth)
    ventricle_mm = ndimage.distance_transform_edt(~ventricles, sampling=resolution).astype(np.float32)
    template = Template(
        resolution=float(resolution), affine=affine, gm=gm, wm=wm, csf=csf, brain=brain,
        depth_mm=depth, outside_mm=outside, ventricles=ventricles, ventricle_mm=ventricle_mm,
        horn_tips_mm={}, centre_mm=np.zeros(3),
    )
    coords = template.voxels_mm(np.flatnonzero(inside.ravel()))
    object.__setattr__(template, "centre_mm", coords[coords[:, 2] > -72].mean(axis=0))
    object.__setattr__(template, "horn_tips_mm", _horn_tips(template))
    for a in (gm, wm, csf, brain, depth, outside, ventricles, ventricle_mm):
        a.flags.writeable = False
    return template


def _find_lateral_ventricles(affine: np.ndarray, csf: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Largest connected deep CSF component near the brain centre.

    Parameters
    ----------
    affine : (4, 4) voxel -> MNI mm (axis aligned)
    csf, depth : (X, Y, Z) CSF probability and depth inside the brain (mm)

    Returns
    -------
    (X, Y, Z) bool
    """
    x, y, z = (affine[a, a] * np.arange(csf.shape[a]) + affine[a, 3] for a in range(3))
    box = ((np.abs(x) < 35)[:, None, None] & ((y > -60) & (y < 40))[None, :, None]
           & ((z > -10) & (z < 45))[None, None, :])
    candidates = (csf > 0.5) & (depth > 12.0) & box
    labels, count = ndimage.label(candidates)
    if count == 0:
        raise RuntimeError("could not find the lateral ventricles in the MNI152 template")
    sizes = ndimage.sum_labels(candidates, labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def _horn_tips(template: Template) -> dict[str, np.ndarray]:
    """Anterior-most (frontal) and posterior-most (occipital) ventricle voxel per side (mm)."""
    coords = template.voxels_mm(np.flatnonzero(template.ventricles.ravel()))
    tips = {}
    for side, sign in (("left", -1.0), ("right", 1.0)):
        half = coords[sign * coords[:, 0] > 0]
        tips[f"frontal_{side}"] = half[np.argmax(half[:, 1])]
        tips[f"occipital_{side}"] = half[np.argmin(half[:, 1])]
    return tips


# ----------------------------------------------------------------------------------------
# subject
# ----------------------------------------------------------------------------------------


@dataclass
class SubjectPhantom:
    """One simulated subject with its ground truth.

    Arrays are on the subject grid ``(X, Y, Z)`` given by ``affine``.

    Attributes
    ----------
    subject, cohort, sex : str
    age : float
    affine : (4, 4) ndarray
        Voxel index -> scanner world mm (RAS+), shared by all images of the subject.
    images : dict str -> (X, Y, Z) ndarray
        Stored images per contrast (``config.dtype``).
    clean : dict str -> (X, Y, Z) float32
        Noise-free images (bias field applied).
    bias : dict str -> (X, Y, Z) float32
        Multiplicative bias field per contrast.
    noise_sigma : dict str -> float
        Standard deviation of each real/imaginary noise channel per contrast.
    class_means : dict str -> dict str -> float
        Mean intensity of every class per contrast (gain and jitter applied, no bias).
    seg : (X, Y, Z) uint8 or None
        Lesion label (None for healthy subjects).
    brain : (X, Y, Z) uint8
        Template brain mask carried into the subject grid.
    template_mm : (3, X, Y, Z) float32
        MNI mm that each voxel centre was sampled from (the full inverse transform).
    scanner_from_template : (4, 4) ndarray
        Affine part of the forward transform, MNI mm -> scanner mm.
    voxel_mm : (3,) tuple
        Voxel size of this subject (array axes).
    lesions : list of dict
        Lesion parameters (type, centre_mm, radii_mm, ...).
    tissue_maps : dict str -> (X, Y, Z) float32 or None
        GM / WM / CSF probabilities after atrophy and lesions, when requested.
    """

    subject: str
    cohort: str
    age: float
    sex: str
    affine: np.ndarray
    images: dict
    clean: dict
    bias: dict
    noise_sigma: dict
    class_means: dict
    seg: np.ndarray | None
    brain: np.ndarray
    template_mm: np.ndarray
    scanner_from_template: np.ndarray
    voxel_mm: tuple
    lesions: list = field(default_factory=list)
    tissue_maps: dict | None = None


def subject_id(cohort: str, index: int) -> str:
    """``f"{cohort}-{index:03d}"`` (:data:`brainuad.paths.PHANTOM_SUBJECT`: the workflow plans these ids)."""
    return PHANTOM_SUBJECT.format(cohort=cohort, index=index)


def _subject_streams(seed: int, cohort: str, index: int) -> dict[str, np.random.Generator]:
    """One independent generator per simulation step, from SeedSequence((seed, cohort, index))."""
    parent = np.random.SeedSequence((int(seed), COHORTS.index(cohort), int(index)))
    return {name: np.random.Generator(np.random.PCG64(child))
            for name, child in zip(_STREAMS, parent.spawn(len(_STREAMS)))}


def _uniform(rng: np.random.Generator, bounds, size=None):
    return rng.uniform(bounds[0], bounds[1], size)


def simulate_subject(cohort: str, index: int, seed: int, config: PhantomConfig | None = None, *,
                     return_tissue_maps: bool = False, **knobs) -> SubjectPhantom:
    """Simulate one subject in memory (nothing is written).

    Parameters
    ----------
    cohort : str
        One of :data:`COHORTS`.
    index : int
        Subject index (1-based); the subject id is ``f"{cohort}-{index:03d}"``.
    seed : int
        Non-negative cohort seed.
    config : PhantomConfig, optional
        All knobs; or pass them as keywords (``config`` and keywords cannot be mixed).
    return_tissue_maps : bool
        Also resample the GM/WM/CSF maps onto the subject grid (``tissue_maps``).

    Returns
    -------
    SubjectPhantom
    """
    if config is None:
        config = PhantomConfig(**knobs)
    elif knobs:
        raise TypeError("pass either config or keyword knobs, not both")
    if cohort not in COHORTS:
        raise ValueError(f"unknown cohort {cohort!r}; expected one of {COHORTS}")
    if int(seed) < 0 or int(index) < 0:
        raise ValueError("seed and index must be non-negative integers")

    template = load_template(config.template_resolution)
    rngs = _subject_streams(seed, cohort, index)
    age = round(float(_uniform(rngs["demographics"], config.age_range)), 1)
    sex = "F" if rngs["demographics"].random() < 0.5 else "M"

    voxel_mm = tuple(float(v) for v in config.voxel_mm)
    if rngs["acquisition"].random() < config.anisotropic_fraction:
        voxel_mm = tuple(float(v) for v in config.anisotropic_mm)
    grid = _SubjectGrid.build(config.fov_mm, voxel_mm, config.orientation, template.resolution)

    scanner_from_template = _random_head_pose(rngs["geometry"], template.centre_mm, config)
    anatomy = _subject_anatomy(template, age, config, rngs["anatomy"])
    displacement = _displacement_field(rngs["deformation"], grid, config.deformation_mm)
    means = _class_means(rngs["contrast"], config)
    noise_fraction = float(_uniform(rngs["contrast"], config.noise_fraction))

    for _ in range(_MAX_LESION_TRIES):
        lesion_maps, mass_effects, lesions = _draw_lesions(cohort, template, anatomy, config, rngs["lesions"])
        template_mm = _template_points(grid, scanner_from_template, displacement, mass_effects)
        sampled = _resample(template, template_mm, anatomy, lesion_maps, means, config.contrasts,
                            return_tissue_maps)
        seg = (grid.block_mean(sampled["seg"]) >= 0.5).astype(np.uint8)
        if cohort == "healthy" or seg.any():
            break
    else:  # pragma: no cover - needs absurd lesion size knobs
        raise RuntimeError(f"could not place a visible {cohort} lesion in {_MAX_LESION_TRIES} tries")

    images, clean, biases, sigmas = {}, {}, {}, {}
    for contrast in config.contrasts:
        bias = _bias_field(rngs[f"bias_{contrast}"], grid, config.bias_strength)
        clean[contrast] = grid.block_mean(sampled[contrast]) * bias
        sigmas[contrast] = noise_fraction * _reference_intensity(means, contrast)
        noisy = _rician(rngs[f"noise_{contrast}"], clean[contrast], sigmas[contrast])
        images[contrast] = _to_dtype(noisy, config.dtype)
        biases[contrast] = bias

    tissue_maps = None
    if return_tissue_maps:
        tissue_maps = {k: grid.block_mean(sampled[k]) for k in ("gm", "wm", "csf")}
    return SubjectPhantom(
        subject=subject_id(cohort, index), cohort=cohort, age=age, sex=sex, affine=grid.affine,
        images=images, clean=clean, bias=biases, noise_sigma=sigmas,
        class_means={c: {k: float(v[c]) for k, v in means.items()} for c in config.contrasts},
        seg=None if cohort == "healthy" else seg,
        brain=(grid.block_mean(sampled["brain"]) >= 0.5).astype(np.uint8),
        template_mm=np.stack([grid.block_mean(c) for c in template_mm]),
        scanner_from_template=scanner_from_template, voxel_mm=voxel_mm, lesions=lesions,
        tissue_maps=tissue_maps,
    )


# ----------------------------------------------------------------------------------------
# acquisition grid, pose and deformation
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SubjectGrid:
    """Acquisition grid: shape, affine, and the finer sampling grid for thick voxels.

    Each voxel is sampled at ``subsample[i]`` points along array axis ``i`` (slice
    profile) and the samples are averaged (:meth:`block_mean`).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    subsample: tuple[int, int, int]

    @classmethod
    def build(cls, fov_mm, voxel_mm, orientation: str, template_resolution: float) -> _SubjectGrid:
        ornt = axcodes2ornt(tuple(orientation))
        affine = np.eye(4)
        shape = []
        for axis, (world_axis, sign) in enumerate(ornt.astype(int)):
            shape.append(max(1, int(round(fov_mm[world_axis] / voxel_mm[axis]))))
            affine[:3, axis] = 0.0
            affine[world_axis, axis] = sign * voxel_mm[axis]
        affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
        subsample = tuple(max(1, int(round(v / template_resolution))) for v in voxel_mm)
        return cls(tuple(shape), affine, subsample)

    @property
    def fine_shape(self) -> tuple[int, int, int]:
        return tuple(n * k for n, k in zip(self.shape, self.subsample))

    def fine_positions(self, axis: int) -> np.ndarray:
        """Voxel-index positions of the fine samples along one array axis, shape (n * k,)."""
        k = self.subsample[axis]
        return (np.arange(self.shape[axis] * k) + 0.5) / k - 0.5

    def block_mean(self, fine: np.ndarray) -> np.ndarray:
        """Average the ``subsample`` fine samples of every voxel: fine_shape -> shape (float32)."""
        if self.subsample == (1, 1, 1):
            return fine.astype(np.float32, copy=False)
        (x, y, z), (a, b, c) = self.shape, self.subsample
        return fine.reshape(x, a, y, b, z, c).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def _random_head_pose(rng: np.random.Generator, centre_mm: np.ndarray, config: PhantomConfig) -> np.ndarray:
    """Forward affine MNI mm -> scanner mm: ``y = t + R S (x - centre)``, shape (4, 4)."""
    angles = _uniform(rng, (-config.rotation_deg, config.rotation_deg), 3)
    scales = 1.0 + _uniform(rng, (-config.scaling, config.scaling), 3)
    translation = _uniform(rng, (-config.translation_mm, config.translation_mm), 3)
    linear = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(scales)
    forward = np.eye(4)
    forward[:3, :3] = linear
    forward[:3, 3] = translation - linear @ centre_mm
    return forward


def _dct_basis(grid: _SubjectGrid, axis: int, order: int) -> np.ndarray:
    """Cosines ``cos(pi k u)`` at the fine positions of one axis, u in (0, 1); shape (n, order)."""
    u = (grid.fine_positions(axis) + 0.5) / grid.shape[axis]
    return np.cos(np.pi * np.outer(u, np.arange(order)))


def _dct_field(grid: _SubjectGrid, coefficients: np.ndarray) -> np.ndarray:
    """Evaluate low-frequency cosine fields on the fine grid.

    Parameters
    ----------
    grid : _SubjectGrid
    coefficients : (C, K, K, K) coefficients of C independent fields

    Returns
    -------
    (C, *fine_shape) float32
    """
    order = coefficients.shape[1]
    bx, by, bz = (_dct_basis(grid, a, order) for a in range(3))
    partial = np.einsum("kc,nabc->nabk", bz, coefficients)
    partial = np.einsum("jb,nabk->najk", by, partial)
    return np.einsum("ia,najk->nijk", bx.astype(np.float32), partial.astype(np.float32))


def _dct_coefficients(rng: np.random.Generator, n_fields: int, order: int) -> np.ndarray:
    """Random coefficients decaying with frequency, no constant term; shape (n, K, K, K)."""
    k = np.arange(order)
    frequency2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    coefficients = rng.standard_normal((n_fields, order, order, order)) / (1.0 + frequency2)
    coefficients[:, 0, 0, 0] = 0.0
    return coefficients


def _displacement_field(rng: np.random.Generator, grid: _SubjectGrid, rms_mm: float) -> np.ndarray:
    """Smooth random displacement (mm, template frame) on the fine grid, shape (3, *fine_shape).

    Scaled so that the root-mean-square displacement magnitude over the field of view is
    ``rms_mm`` (computed exactly from the coefficients, the cosines being orthogonal on
    the sampling grid).
    """
    coefficients = _dct_coefficients(rng, 3, _DEFORMATION_DCT_ORDER)
    half = np.where(np.arange(_DEFORMATION_DCT_ORDER) == 0, 1.0, 0.5)
    mean_square = np.einsum("nabc,a,b,c->", coefficients ** 2, half, half, half)
    return _dct_field(grid, coefficients * (rms_mm / math.sqrt(mean_square)))


def _bias_field(rng: np.random.Generator, grid: _SubjectGrid, strength: float) -> np.ndarray:
    """Smooth multiplicative field in [1/(1+s), 1+s] on the acquisition grid, shape (X, Y, Z)."""
    coefficients = _dct_coefficients(rng, 1, _BIAS_DCT_ORDER)
    coarse = _SubjectGrid(grid.shape, grid.affine, (1, 1, 1))
    log_field = _dct_field(coarse, coefficients)[0]
    log_field *= np.float32(math.log1p(strength) / np.abs(log_field).max())
    return np.exp(log_field, dtype=np.float32)


def _template_points(grid: _SubjectGrid, scanner_from_template: np.ndarray, displacement: np.ndarray,
                     mass_effects: list[dict]) -> np.ndarray:
    """MNI mm sampled by every fine-grid point, shape (3, *fine_shape) float32.

    scanner world (grid affine) -> inverse head pose -> + displacement -> mass effect.
    """
    template_from_scanner = np.linalg.inv(scanner_from_template)
    template_from_voxel = template_from_scanner @ grid.affine
    points = displacement.copy()
    for out in range(3):
        for axis in range(3):
            shape = [1, 1, 1]
            shape[axis] = -1
            term = template_from_voxel[out, axis] * grid.fine_positions(axis)
            points[out] += term.astype(np.float32).reshape(shape)
        points[out] += np.float32(template_from_voxel[out, 3])
    for effect in mass_effects:
        _apply_mass_effect(points, **effect)
    return points


def _apply_mass_effect(points: np.ndarray, centre_mm, core_radius_mm: float, push_mm: float,
                       decay_mm: float) -> None:
    """Radial push of tissue away from a tumour, as a pull-back on the sample points.

    A point at distance ``r`` from the centre samples the template at ``r - m(r)``,
    ``m(r) = push * min(r / R, 1) * exp(-((r - R)+ / decay)^2)`` with ``R = core + push``:
    the core (radius ``core``) is stretched to radius ``R`` and tissue outside is pushed
    outwards, the push fading over ``decay_mm``. ``r - m(r)`` is strictly increasing, so
    the map is one-to-one. Modifies ``points`` (3, ...) in place.
    """
    outer = core_radius_mm + push_mm
    offset = [points[a] - np.float32(centre_mm[a]) for a in range(3)]
    radius = np.sqrt(offset[0] ** 2 + offset[1] ** 2 + offset[2] ** 2)
    beyond = np.maximum(radius - outer, 0.0) / decay_mm
    shrink = push_mm * np.minimum(radius / outer, 1.0) * np.exp(-beyond * beyond) / np.maximum(radius, 1e-6)
    for a in range(3):
        points[a] -= offset[a] * shrink


# ----------------------------------------------------------------------------------------
# anatomy and contrast in template space
# ----------------------------------------------------------------------------------------


def _step(distance_mm: np.ndarray, edge_mm: float, width_mm: float) -> np.ndarray:
    """Soft step 0 -> 1 at ``edge_mm`` over ``width_mm`` (partial-volume edge)."""
    return np.clip((distance_mm - np.float32(edge_mm)) / np.float32(width_mm) + np.float32(0.5), 0, 1)


def _beyond_ventricles(template: Template, dilation_mm: float) -> np.ndarray:
    """Soft indicator (X, Y, Z) of lying outside the lateral ventricles dilated by ``dilation_mm``.

    The ventricle boundary lies half a voxel outside the ventricle voxels.
    """
    edge = 0.5 * template.resolution + dilation_mm
    return _step(template.ventricle_mm, edge, template.resolution)


def _subject_anatomy(template: Template, age: float, config: PhantomConfig,
                     rng: np.random.Generator) -> dict[str, Any]:
    """Tissue probability maps of one subject in template space.

    Ageing: ventricles dilate by ``0.35 mm/decade`` (periventricular tissue becomes CSF)
    and GM loses ``1.5 %/decade`` of its probability to CSF, times ``age_atrophy``. The head layers
    (extra-axial CSF, skull, scalp) have per-subject thicknesses.

    Returns
    -------
    dict with (X, Y, Z) float32 maps ``gm, wm, csf, skull, scalp`` (summing to at most 1;
    the rest is air) and the ventricle dilation ``dilation_mm``.
    """
    decades = max(age - 20.0, 0.0) / 10.0 * config.age_atrophy
    dilation = 0.35 * decades
    gm_loss = min(0.015 * decades, 0.5)
    thickness = rng.uniform((1.5, 4.0, 4.0), (3.0, 8.0, 8.0))  # extra-axial CSF, skull, scalp (mm)

    width = template.resolution
    converted = 1.0 - _beyond_ventricles(template, dilation)
    gm = template.gm * np.float32(1.0 - gm_loss)
    wm = template.wm.copy()
    csf = template.csf + template.gm * np.float32(gm_loss)
    csf += (gm + wm) * converted
    gm *= 1.0 - converted
    wm *= 1.0 - converted
    anatomy = {"gm": gm, "wm": wm, "csf": csf, "dilation_mm": dilation}
    if config.head:
        outside = template.outside_mm
        edges = np.cumsum(thickness)
        layers = [1.0 - template.brain] + [_step(outside, e, width) for e in edges]
        anatomy["csf"] = csf + layers[0] * (1.0 - layers[1])
        anatomy["skull"] = layers[0] * (layers[1] - layers[2])
        anatomy["scalp"] = layers[0] * (layers[2] - layers[3])
    return anatomy


def _class_means(rng: np.random.Generator, config: PhantomConfig) -> dict[str, dict[str, float]]:
    """Per-subject mean of every class per contrast: table x scale x gain x (1 + jitter).

    Draws for every class and every contrast of :data:`CONTRASTS` in a fixed order, so
    the choice of contrasts does not change the draws.
    """
    gain = float(_uniform(rng, config.gain_range))
    jitter = rng.standard_normal((len(CLASS_INTENSITY), len(CONTRASTS)))
    jitter = 1.0 + config.intensity_jitter * np.clip(jitter, -2.5, 2.5)
    means = {
        cls: {c: config.intensity_scale * gain * table[c] * jitter[i, j] for j, c in enumerate(CONTRASTS)}
        for i, (cls, table) in enumerate(CLASS_INTENSITY.items())
    }
    for name, (base, changed) in DERIVED_CONTRASTS.items():  # same gain and jitter as the base contrast
        for cls, per in means.items():
            per[name] = per[base] * (changed[cls] / CLASS_INTENSITY[cls][base] if cls in changed else 1.0)
    return means


def _reference_intensity(means: dict, contrast: str) -> float:
    """Brightest brain tissue mean of a contrast (noise is relative to it)."""
    return max(means[t][contrast] for t in ("wm", "gm", "csf"))


def _intensity_image(anatomy: dict, lesion_maps: dict, means: dict, contrast: str) -> np.ndarray:
    """Noise-free template-space image: partial-volume mixture of the class means, (X, Y, Z).

    Lesion classes replace the underlying tissue in proportion to their membership.
    """
    image = np.zeros_like(anatomy["gm"])
    for cls in _TISSUES:
        if cls in anatomy:
            image += anatomy[cls] * np.float32(means[cls][contrast])
    if lesion_maps:
        total = sum(lesion_maps.values())
        image *= 1.0 - total
        for cls, membership in lesion_maps.items():
            image += membership * np.float32(means[cls][contrast])
    return image


def _resample(template: Template, template_mm: np.ndarray, anatomy: dict, lesion_maps: dict,
              means: dict, contrasts, return_tissue_maps: bool) -> dict[str, np.ndarray]:
    """One resampling pass of all template-space maps at the subject's sample points.

    Returns
    -------
    dict of fine-grid arrays: one float32 image per contrast, ``seg`` and ``brain``
    (order 0, uint8) and optionally ``gm, wm, csf`` (order 1).
    """
    scale = np.float32(1.0 / template.resolution)
    index = np.empty_like(template_mm)
    for a in range(3):
        np.multiply(template_mm[a] - np.float32(template.affine[a, 3]), scale, out=index[a])

    def sample(volume, order):
        return ndimage.map_coordinates(volume, index, order=order, mode="constant", cval=0.0)

    out = {c: sample(_intensity_image(anatomy, lesion_maps, means, c), 1) for c in contrasts}
    lesion = sum(lesion_maps.values()) if lesion_maps else None
    labels = (template.brain > 0.5).astype(np.uint8)  # bit 0: brain, bit 1: lesion
    if lesion is not None:
        labels |= ((lesion >= 0.5) & (template.brain > 0.5)).astype(np.uint8) << 1
    labels = sample(labels, 0)
    out["brain"], out["seg"] = labels & 1, labels >> 1
    if return_tissue_maps:
        for k in ("gm", "wm", "csf"):
            tissue = anatomy[k] if lesion is None else anatomy[k] * (1.0 - lesion)
            if k == "csf":  # only the brain's CSF, not the extra-axial layer of the head
                tissue = tissue * template.brain
            out[k] = sample(tissue, 1)
    return out


# ----------------------------------------------------------------------------------------
# lesions (template space)
# ----------------------------------------------------------------------------------------


def _draw_lesions(cohort: str, template: Template, anatomy: dict, config: PhantomConfig,
                  rng: np.random.Generator) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    """Lesion membership maps of a cohort in template space.

    Returns
    -------
    maps : dict class -> (X, Y, Z) float32 membership in [0, 1] (sum <= 1)
    mass_effects : list of keyword dicts for :func:`_apply_mass_effect`
    lesions : list of dict describing each lesion
    """
    if cohort == "healthy":
        return {}, [], []
    draw = {"tumour": _draw_tumour, "ms": _draw_ms, "stroke": _draw_stroke, "wmh": _draw_wmh}[cohort]
    return draw(template, anatomy, config, rng)


def _pick_centre(template: Template, candidates: np.ndarray, rng: np.random.Generator, what: str) -> np.ndarray:
    """MNI mm of one random voxel of a boolean candidate map (X, Y, Z), shape (3,)."""
    flat = np.flatnonzero(candidates.ravel())
    if flat.size == 0:
        raise RuntimeError(f"no template voxel satisfies the {what} placement rule; "
                           f"reduce the lesion size knobs")
    return template.voxels_mm(flat[rng.integers(flat.size)][None])[0]


def _box(template: Template, centre_mm: np.ndarray, half_mm: float):
    """Template sub-box around a point: (slices, broadcastable mm coordinates (3,))."""
    slices, coords = [], []
    for a in range(3):
        axis_mm = template.axis_mm(a)
        lo = int(np.searchsorted(axis_mm, centre_mm[a] - half_mm))
        hi = int(np.searchsorted(axis_mm, centre_mm[a] + half_mm, side="right"))
        slices.append(slice(lo, max(hi, lo + 1)))
        shape = [1, 1, 1]
        shape[a] = -1
        coords.append(axis_mm[lo:max(hi, lo + 1)].astype(np.float32).reshape(shape))
    return tuple(slices), coords


def _ellipsoid(template: Template, centre_mm: np.ndarray, radii_mm, rotation: np.ndarray,
               rng: np.random.Generator | None = None, roughness: float = 0.0):
    """Soft (optionally irregular) ellipsoid membership in a box around it.

    Parameters
    ----------
    centre_mm : (3,) MNI mm
    radii_mm : (3,) semi-axes along the columns of ``rotation``
    rotation : (3, 3) orthonormal axes (columns)
    rng, roughness : smooth random boundary perturbation with standard deviation
        ``roughness * mean radius`` (needs ``rng``)

    Returns
    -------
    slices : tuple of 3 slices of the template grid
    membership : float32 box array in [0, 1]; 0.5 on the (perturbed) surface, one
        template voxel of partial-volume edge
    """
    radii = np.asarray(radii_mm, float)
    mean_radius = float(np.exp(np.log(radii).mean()))
    slices, coords = _box(template, centre_mm, radii.max() * (1.0 + 3 * roughness) + 2 * template.resolution)
    offsets = [coords[a] - np.float32(centre_mm[a]) for a in range(3)]
    rho2 = 0
    for axis in range(3):
        local = sum(offsets[a] * np.float32(rotation[a, axis]) for a in range(3))
        rho2 = rho2 + (local / np.float32(radii[axis])) ** 2
    signed_mm = (np.sqrt(rho2) - 1.0) * np.float32(mean_radius)
    if roughness > 0 and rng is not None:
        noise = rng.standard_normal(signed_mm.shape).astype(np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=max(1.0, 0.4 * mean_radius / template.resolution))
        noise /= max(float(noise.std()), 1e-6)
        signed_mm = signed_mm + np.float32(roughness * mean_radius) * noise
    return slices, np.clip(0.5 - signed_mm / np.float32(template.resolution), 0, 1).astype(np.float32)


def _paste_max(target: np.ndarray, slices, membership: np.ndarray) -> None:
    np.maximum(target[slices], membership, out=target[slices])


def _draw_tumour(template, anatomy, config, rng):
    """Tumour: irregular core (T2 bright, T1 dark) inside an oedema shell spreading in WM.

    The mass effect stretches the core by ``tumour_mass_effect * core radius`` and
    pushes the surrounding tissue outwards, fading over the tumour radius.
    """
    radius = float(_uniform(rng, config.tumour_radius_mm))
    core_radius = radius * float(_uniform(rng, config.tumour_core_fraction))
    supratentorial = (template.axis_mm(2) > -20)[None, None, :]
    lateral = (np.abs(template.axis_mm(0)) > 12)[:, None, None]
    candidates = (anatomy["wm"] > 0.5) & (template.depth_mm >= 0.6 * radius) & supratentorial & lateral
    centre = _pick_centre(template, candidates, rng, "tumour")
    rotation = Rotation.random(rng=rng).as_matrix()
    oedema_radii = radius * rng.uniform(0.8, 1.2, 3)
    core_radii = core_radius * rng.uniform(0.85, 1.15, 3)
    shape = template.shape
    core = np.zeros(shape, np.float32)
    oedema = np.zeros(shape, np.float32)
    slices, part = _ellipsoid(template, centre, core_radii, rotation, rng, config.lesion_roughness)
    _paste_max(core, slices, part)
    slices, part = _ellipsoid(template, centre, oedema_radii, rotation, rng, config.lesion_roughness)
    _paste_max(oedema, slices, part)
    core *= template.brain
    spread = np.clip(anatomy["wm"] + 0.4 * anatomy["gm"], 0, 1)  # oedema follows white matter
    oedema = np.minimum(oedema * spread, 1.0 - core)
    push = config.tumour_mass_effect * core_radius
    mass_effects = [{"centre_mm": centre, "core_radius_mm": core_radius, "push_mm": push,
                     "decay_mm": radius}] if push > 0 else []
    lesion = {"type": "tumour", "centre_mm": centre.tolist(), "radius_mm": radius,
              "core_radius_mm": core_radius, "mass_effect_mm": push}
    return {"tumour_core": core, "oedema": oedema}, mass_effects, [lesion]


def _orthonormal_frame(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rotation whose first column is ``direction`` (normalised)."""
    frame, _ = np.linalg.qr(np.column_stack([direction, np.eye(3)]))
    frame = frame[:, :3] * np.sign(frame[:, :1].T @ direction)[0]
    if np.linalg.det(frame) < 0:
        frame[:, 2] *= -1
    return frame


def _white_matter_weight(anatomy: dict) -> np.ndarray:
    """Where WM lesions may grow, (X, Y, Z) in [0, 1]: full weight from 50 % WM upwards."""
    return np.clip(anatomy["wm"] * np.float32(2.0), 0, 1)


def _distance_gradient(template: Template, centre_mm: np.ndarray) -> np.ndarray:
    """Central-difference gradient (3,) of the distance to the ventricles at a voxel centre."""
    voxel = np.round((centre_mm - template.affine[:3, 3]) / template.resolution).astype(int)
    gradient = np.zeros(3)
    for a in range(3):
        step = np.eye(3, dtype=int)[a]
        ahead = tuple(np.minimum(voxel + step, np.array(template.shape) - 1))
        behind = tuple(np.maximum(voxel - step, 0))
        gradient[a] = template.ventricle_mm[ahead] - template.ventricle_mm[behind]
    return gradient


def _draw_ms(template, anatomy, config, rng):
    """MS: small ellipsoids in periventricular WM, elongated away from the ventricles."""
    count = int(rng.integers(config.ms_count[0], config.ms_count[1] + 1))
    distance = template.ventricle_mm - np.float32(anatomy["dilation_mm"])
    candidates = (anatomy["wm"] > 0.6) & (distance > 1.0) & (distance <= config.ms_periventricular_mm)
    membership = np.zeros(template.shape, np.float32)
    lesions = []
    for _ in range(max(count, 1)):
        centre = _pick_centre(template, candidates, rng, "ms")
        direction = _distance_gradient(template, centre) + 1e-3 * rng.standard_normal(3)
        long_axis = float(_uniform(rng, config.ms_radius_mm))
        radii = long_axis * np.concatenate([[1.0], rng.uniform(0.5, 0.9, 2)])
        slices, part = _ellipsoid(template, centre, radii, _orthonormal_frame(direction))
        _paste_max(membership, slices, part)
        lesions.append({"type": "ms", "centre_mm": centre.tolist(), "radii_mm": radii.tolist()})
    return {"ms": membership * _white_matter_weight(anatomy)}, [], lesions


def _draw_stroke(template, anatomy, config, rng):
    """Stroke: irregular territory near the cortex of one hemisphere, CSF-like."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    x, z = template.axis_mm(0), template.axis_mm(2)
    hemisphere = (side * x > 25)[:, None, None] & ((z > -10) & (z < 60))[None, None, :]  # MCA-like
    cortical = (anatomy["gm"] > 0.3) & (template.depth_mm >= 3) & (template.depth_mm <= 15)
    centre = _pick_centre(template, cortical & hemisphere, rng, "stroke")
    radii = _uniform(rng, config.stroke_radius_mm, 3)
    rotation = Rotation.random(rng=rng).as_matrix()
    membership = np.zeros(template.shape, np.float32)
    slices, part = _ellipsoid(template, centre, radii, rotation, rng, config.lesion_roughness)
    _paste_max(membership, slices, part)
    same_side = _step(side * x, 2.0, template.resolution)[:, None, None].astype(np.float32)
    membership *= np.clip(anatomy["gm"] + anatomy["wm"], 0, 1) * same_side
    lesion = {"type": "stroke", "centre_mm": centre.tolist(), "radii_mm": radii.tolist(),
              "hemisphere": "right" if side > 0 else "left"}
    return {"stroke": membership}, [], [lesion]


def _draw_wmh(template, anatomy, config, rng):
    """WMH: caps at the frontal and occipital horns plus an optional periventricular rim."""
    dilation = anatomy["dilation_mm"]
    membership = np.zeros(template.shape, np.float32)
    lesions = []
    for name, tip in template.horn_tips_mm.items():
        outward = np.array([0.0, 1.0 if name.startswith("frontal") else -1.0, 0.0])
        radius = float(_uniform(rng, config.wmh_cap_radius_mm))
        centre = tip + outward * dilation
        radii = radius * np.array([0.8, 1.0, 0.8]) * rng.uniform(0.8, 1.2, 3)
        slices, part = _ellipsoid(template, centre, radii, np.eye(3))
        _paste_max(membership, slices, part)
        lesions.append({"type": "wmh_cap", "horn": name, "centre_mm": centre.tolist(), "radii_mm": radii.tolist()})
    rim = float(_uniform(rng, config.wmh_rim_mm))
    if rim >= template.resolution:  # a thinner lining is not resolved (it would only give speckle)
        band = 1.0 - _beyond_ventricles(template, dilation + rim)
        np.maximum(membership, band, out=membership)
        lesions.append({"type": "wmh_rim", "thickness_mm": rim})
    outside_ventricles = _beyond_ventricles(template, dilation)
    return {"wmh": membership * _white_matter_weight(anatomy) * outside_ventricles}, [], lesions


# ----------------------------------------------------------------------------------------
# noise, storage, cohort
# ----------------------------------------------------------------------------------------


def _rician(rng: np.random.Generator, clean: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the clean signal plus complex Gaussian noise (std ``sigma`` per channel)."""
    if sigma <= 0:
        return clean.copy()
    real = rng.standard_normal(clean.shape, dtype=np.float32)
    real *= np.float32(sigma)
    real += clean
    imaginary = rng.standard_normal(clean.shape, dtype=np.float32)
    imaginary *= np.float32(sigma)
    return np.hypot(real, imaginary)


def _to_dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "int16":
        return np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16)
    return image.astype(np.float32)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)  # scanner anatomical frame
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"brainuad phantom"
    nib.save(image, path)


def generate_cohort(cohort: str, n: int, out_dir, seed: int, *,
                    voxel_mm=(2.0, 2.0, 2.0), anisotropic_fraction: float = 0.0,
                    anisotropic_mm=(1.0, 1.0, 4.0), template_resolution: int = 2,
                    fov_mm=(220.0, 240.0, 200.0), age_range=(20.0, 86.0),
                    contrasts=("t1", "t2"), **realism) -> pd.DataFrame:
    """Write a phantom cohort of raw NIfTI subjects and its participants table.

    Parameters
    ----------
    cohort : str
        One of :data:`COHORTS`; every cohort but ``healthy`` gets lesion labels.
    n : int
        Number of subjects, ids ``f"{cohort}-{i:03d}"`` for i = 1..n.
    out_dir : path
        Output folder (created).
    seed : int
        Non-negative seed; subject i depends only on (seed, cohort, i) and the knobs.
    voxel_mm, anisotropic_fraction, anisotropic_mm, template_resolution, fov_mm, age_range, contrasts
        See :class:`PhantomConfig` (same defaults).
    **realism
        Any other :class:`PhantomConfig` field (pose, deformation, bias, noise, ageing,
        head, lesion sizes, orientation, dtype).

    Returns
    -------
    pandas.DataFrame
        The ``participants.tsv`` table: ``subject, cohort, age, sex``, one column per
        contrast (file name relative to ``out_dir``) and ``seg`` (empty for healthy).

    Notes
    -----
    Writes ``{subject}_{contrast}.nii.gz`` (int16 or float32, scanner frame),
    ``{subject}_seg.nii.gz`` (uint8 0/1, pathological cohorts) and ``participants.tsv``.
    """
    config = PhantomConfig(voxel_mm=voxel_mm, anisotropic_fraction=anisotropic_fraction,
                           anisotropic_mm=anisotropic_mm, template_resolution=template_resolution,
                           fov_mm=fov_mm, age_range=age_range, contrasts=contrasts, **realism)
    if cohort not in COHORTS:
        raise ValueError(f"unknown cohort {cohort!r}; expected one of {COHORTS}")
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(1, int(n) + 1):
        phantom = simulate_subject(cohort, index, seed, config)
        row = {"subject": phantom.subject, "cohort": cohort, "age": phantom.age, "sex": phantom.sex}
        for contrast in config.contrasts:
            name = f"{phantom.subject}_{contrast}.nii.gz"
            _save(phantom.images[contrast], phantom.affine, out_dir / name)
            row[contrast] = name
        row["seg"] = ""
        if phantom.seg is not None:
            row["seg"] = f"{phantom.subject}_seg.nii.gz"
            _save(phantom.seg, phantom.affine, out_dir / row["seg"])
        rows.append(row)
    columns = ["subject", "cohort", "age", "sex", *config.contrasts, "seg"]
    table = pd.DataFrame(rows, columns=columns)
    table.to_csv(out_dir / "participants.tsv", sep="\t", index=False)
    return table
