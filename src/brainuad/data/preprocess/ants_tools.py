"""antspyx building blocks: nibabel <-> ANTs images, the registration template, resampling,
affine registration, N4 and the template correlation used in the QC record."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from brainuad.data.preprocess.antspy import ants  # ANTsPy without plotting / statsmodels / sklearn
import nibabel as nib
import numpy as np

from brainuad.data.nifti import load_image, load_label
from brainuad.data.preprocess.options import (
    DEFAULT_N4_OPTIONS,
    DEFAULT_REG_ITERATIONS,
    DEFAULT_REG_SAMPLING_RATE,
    DEFAULT_REG_SHRINK_FACTORS,
    DEFAULT_REG_SMOOTHING_SIGMAS,
)
from brainuad.errors import InputDataError

__all__ = [
    "MOVING_MASK_MARGIN_MM",
    "REG_MASK_MARGIN_MM",
    "ants_to_nifti",
    "correct_bias",
    "correlation_in_mask",
    "load_registration_template",
    "native_volume_scale",
    "nifti_to_ants",
    "register_affine",
    "resample_isotropic",
    "transform_record",
]

#: The metric is evaluated inside the template brain mask dilated by this margin.
REG_MASK_MARGIN_MM = 4.0
#: After the rigid start, the metric also sees only the subject's voxels within this distance of the
#: rigidly placed (dilated) template brain mask: room for a +-15 % head size around a 70 mm brain radius.
MOVING_MASK_MARGIN_MM = 6.0
#: Transforms that are fitted in one stage (no rigid start).
_SINGLE_STAGE_TRANSFORMS = ("rigid", "translation")

_SEED = 20240517  # ANTs' random metric sampling is made reproducible with this seed.
_TEMPLATE_ALIASES = ("mni152",)


# --------------------------------------------------------------------------- conversion


def nifti_to_ants(image: nib.spatialimages.SpatialImage, path: str | Path | None = None) -> ants.ANTsImage:
    """Convert a nibabel image to a float ANTs image in the same physical space.

    Parameters
    ----------
    image : nibabel image
        3D image with shape (X, Y, Z) and a RAS+ affine in mm.
    path : str or Path, optional
        File the image came from; if given, an affine ANTs cannot represent
        (strong shear) raises :class:`InputDataError` naming it.

    Returns
    -------
    ants.ANTsImage
        Same voxels, shape (X, Y, Z); origin/direction converted to ITK's
        LPS+ convention by :func:`ants.from_nibabel_nifti` (small shears are
        removed, as ITK images have none).
    """
    data = np.asarray(image.dataobj, dtype=np.float32)
    copy = nib.Nifti1Image(data, image.affine)
    copy.header.set_xyzt_units("mm", "sec")
    try:
        return ants.from_nibabel_nifti(copy)
    except ValueError as error:
        if path is None:
            raise
        raise InputDataError(path, f"affine cannot be represented as an ITK image ({error})") from error


def ants_to_nifti(image: ants.ANTsImage) -> nib.Nifti1Image:
    """Convert an ANTs image to nibabel (RAS+ affine), see :func:`nifti_to_ants`."""
    return ants.to_nibabel_nifti(image)


# --------------------------------------------------------------------------- template


@functools.lru_cache(maxsize=4)
def _mni152(spacing_mm: float) -> tuple[ants.ANTsImage, ants.ANTsImage]:
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    template = load_mni152_template(resolution=1)
    mask = load_mni152_brain_mask(resolution=1)
    step = spacing_mm / 1.0
    if np.isclose(step, round(step)) and round(step) >= 1:
        # Integer multiple of the 1 mm grid: point sampling every k-th voxel is
        # what load_mni152_template(resolution=k) returns, without its ~1 s cost.
        k = int(round(step))
        template = template.slicer[::k, ::k, ::k]
        mask = mask.slicer[::k, ::k, ::k]
        return nifti_to_ants(template), nifti_to_ants(mask)
    return (
        ants.resample_image(nifti_to_ants(template), (spacing_mm,) * 3, use_voxels=False, interp_type=4),
        ants.resample_image(nifti_to_ants(mask), (spacing_mm,) * 3, use_voxels=False, interp_type=1),
    )


def load_registration_template(
    template: str | Path = "mni152",
    template_mask: str | Path | None = None,
    spacing_mm: float = 2.0,
) -> tuple[ants.ANTsImage, ants.ANTsImage]:
    """Registration template (image and brain mask) on an isotropic grid.

    Parameters
    ----------
    template : str or Path
        ``"mni152"`` for nilearn's bundled MNI152 2009 T1 template
        (skull-stripped, values in [0, 1]) with its brain mask, or the path of
        a template image.
    template_mask : str, Path or None
        Brain mask of a user template (required with a path, ignored for
        ``"mni152"``); must be on the template's grid.
    spacing_mm : float
        Isotropic voxel size of the returned grid.

    Returns
    -------
    template : ants.ANTsImage
        (X, Y, Z) float image at ``spacing_mm``; zero outside the mask is not
        required.
    mask : ants.ANTsImage
        (X, Y, Z) binary float image (1 = brain) on the same grid.
    """
    if str(template).lower() in _TEMPLATE_ALIASES:
        image, mask = _mni152(float(spacing_mm))
        return image.clone(), mask.clone()
    if template_mask is None:
        raise ValueError("template_mask is required when template is a file")
    image_nifti = load_image(template)
    mask_array = load_label(template_mask, template, allow_empty=False)
    image = resample_isotropic(nifti_to_ants(image_nifti, template), spacing_mm)
    mask_nifti = nib.Nifti1Image(mask_array.astype(np.float32), image_nifti.affine)
    mask = resample_isotropic(nifti_to_ants(mask_nifti), spacing_mm, interpolation="nearest")
    return image, mask


# --------------------------------------------------------------------------- resampling, registration, N4

_RESAMPLE_INTERPOLATION = {"linear": 0, "nearest": 1, "bspline": 4}


def resample_isotropic(image: ants.ANTsImage, spacing_mm: float, interpolation: str = "bspline") -> ants.ANTsImage:
    """Resample to isotropic voxels of ``spacing_mm`` (same field of view).

    Parameters
    ----------
    image : ants.ANTsImage
        (X, Y, Z) image.
    spacing_mm : float
        New voxel edge in mm.
    interpolation : {"bspline", "linear", "nearest"}
        ``"bspline"`` (cubic) for intensities, ``"nearest"`` for labels.

    Returns
    -------
    ants.ANTsImage
        About ``(X, Y, Z) * old_spacing / spacing_mm`` voxels; unchanged
        (a copy) when the spacing is already ``spacing_mm``.
    """
    if np.allclose(image.spacing, spacing_mm, rtol=0, atol=1e-4):
        return image.clone()
    return ants.resample_image(
        image, (float(spacing_mm),) * 3, use_voxels=False, interp_type=_RESAMPLE_INTERPOLATION[interpolation]
    )


def register_affine(
    fixed: ants.ANTsImage,
    moving: ants.ANTsImage,
    workdir: str | Path,
    *,
    fixed_mask: ants.ANTsImage | None = None,
    transform: str = "Affine",
    iterations: Sequence[int] = DEFAULT_REG_ITERATIONS,
    shrink_factors: Sequence[int] = DEFAULT_REG_SHRINK_FACTORS,
    smoothing_sigmas: Sequence[float] = DEFAULT_REG_SMOOTHING_SIGMAS,
    sampling_rate: float = DEFAULT_REG_SAMPLING_RATE,
) -> list[str]:
    """Register ``moving`` to ``fixed`` with Mattes mutual information, rigid first.

    Mutual information does not assume equal contrasts, so T2 / FLAIR images
    register to a T1 template. Two stages (as antsRegistrationSyN's rigid ->
    affine): a **rigid** stage initialised by aligning the centres of mass
    (on the schedule's levels but the finest), then the requested ``transform`` started from it, with its metric limited
    to the subject's voxels near the rigidly placed template brain (the
    ``fixed_mask`` mapped back into the subject and dilated by
    :data:`MOVING_MASK_MARGIN_MM`). Why: the template is skull-stripped (zero
    outside the brain) while the subject is a whole head. In T2 the CSF
    around the brain and the scalp are bright, so the strongest edge that
    resembles the template's brain -> zero border is the scalp -> air edge; a
    one-stage affine fit uses its scale freedom to shrink the whole head into
    the template brain (|r| with the template 0.001-0.11, brain volume
    1.5-1.8 x too large on demo phantom subjects). The rigid stage cannot
    scale, lands on the brain, and the moving mask keeps scalp and air out of
    the affine stage. ``"Rigid"`` / ``"Translation"`` are fitted in one stage,
    and so is everything without a ``fixed_mask``. ANTs' random sampling is
    seeded for reproducibility (results are bit-identical with one ITK thread).

    Parameters
    ----------
    fixed : ants.ANTsImage
        Template, shape (X, Y, Z).
    moving : ants.ANTsImage
        Subject image in its own physical space.
    workdir : str or Path
        Existing folder that receives ANTs' transform files (``reg_*``).
    fixed_mask : ants.ANTsImage, optional
        Region of ``fixed`` (e.g. the dilated brain mask) where the metric is
        evaluated; restricts the fit to the brain and speeds it up.
    transform : str
        ``type_of_transform`` of :func:`ants.registration` (``"Rigid"``,
        ``"Similarity"``, ``"Affine"``; deformable types work but ignore the
        schedule below for their deformable stage).
    iterations, shrink_factors, smoothing_sigmas : sequences of equal length
        Multi-resolution schedule of the linear stage (sigmas in voxels).
    sampling_rate : float
        Fraction of voxels sampled by the metric (regular grid, jittered).

    Returns
    -------
    list of str
        Forward transforms (template -> subject points), for
        :func:`ants.apply_transforms` with ``fixed`` as reference.
    """
    schedule = (tuple(int(i) for i in iterations), tuple(int(s) for s in shrink_factors),
                tuple(smoothing_sigmas))
    if len({len(level) for level in schedule}) != 1:
        raise ValueError("reg_iterations, reg_shrink_factors and reg_smoothing_sigmas must have the same length")
    # antspyx 0.6.3 exposes the --random-seed option only as module state
    # (ants.set_ants_deterministic also forces "Repro" transform types), so it
    # is set for this call and restored afterwards.
    settings = {"mask": fixed_mask, "aff_metric": "mattes", "aff_random_sampling_rate": float(sampling_rate),
                "aff_iterations": schedule[0], "aff_shrink_factors": schedule[1],
                "aff_smoothing_sigmas": schedule[2], "verbose": False}
    previous_seed = ants.config._random_seed
    ants.config._random_seed = _SEED
    try:
        if fixed_mask is None or str(transform).lower() in _SINGLE_STAGE_TRANSFORMS:
            result = ants.registration(fixed=fixed, moving=moving, type_of_transform=transform,
                                       outprefix=str(Path(workdir) / "reg_"), **settings)
            return list(result["fwdtransforms"])
        coarse = max(1, len(schedule[0]) - 1)  # the affine stage refines at full resolution
        rigid = ants.registration(fixed=fixed, moving=moving, type_of_transform="Rigid",
                                  outprefix=str(Path(workdir) / "rigid_"),
                                  **{**settings, "aff_iterations": schedule[0][:coarse],
                                     "aff_shrink_factors": schedule[1][:coarse],
                                     "aff_smoothing_sigmas": schedule[2][:coarse]})
        moving_mask = ants.apply_transforms(moving, fixed_mask, rigid["invtransforms"],
                                            interpolator="nearestNeighbor")
        margin = max(1, int(round(MOVING_MASK_MARGIN_MM / min(moving.spacing))))
        moving_mask = ants.iMath(moving_mask, "MD", margin)
        result = ants.registration(fixed=fixed, moving=moving, type_of_transform=transform,
                                   initial_transform=rigid["fwdtransforms"][0], moving_mask=moving_mask,
                                   outprefix=str(Path(workdir) / "reg_"), **settings)
    finally:
        ants.config._random_seed = previous_seed
    return list(result["fwdtransforms"])


def native_volume_scale(transforms: Sequence[str]) -> float:
    """Volume ratio native / template of a registration: |det| of the composed linear parts.

    Parameters
    ----------
    transforms : sequence of str
        Transform files of :func:`register_affine`; only the affine ``.mat`` files count.

    Returns
    -------
    float
        Product of ``|det(A)|`` over the 3 x 3 matrices ``A`` of the affine transforms.
    """
    scale = 1.0
    for path in transforms:
        if path.endswith(".mat"):
            parameters = np.asarray(ants.read_transform(path).parameters, dtype=np.float64)
            scale *= abs(np.linalg.det(parameters[:9].reshape(3, 3)))
    return float(scale)


def transform_record(transforms: Sequence[str]) -> list[dict]:
    """The registration's transform files as JSON-serialisable records (stored in the subject's QC record).

    Parameters
    ----------
    transforms : sequence of str
        Forward transforms of :func:`register_affine` (template -> subject points), in
        :func:`ants.apply_transforms` order.

    Returns
    -------
    list of dict
        Per file, in the same order: ``type`` (ITK transform type, e.g. ``AffineTransform_float_3_3``),
        ``parameters`` and ``fixed_parameters`` (lists of float). A non-linear transform (a displacement
        field of a deformable registration) cannot be stored this way: its record is ``{"type":
        "unsupported", "file": <name>}`` and :func:`brainuad.data.preprocess.raw_space.to_raw_space`
        refuses it.
    """
    records = []
    for path in transforms:
        if not str(path).endswith(".mat"):
            records.append({"type": "unsupported", "file": Path(path).name})
            continue
        tx = ants.read_transform(str(path))
        records.append({"type": str(tx.type), "parameters": [float(v) for v in tx.parameters],
                        "fixed_parameters": [float(v) for v in tx.fixed_parameters]})
    return records


def correlation_in_mask(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two volumes over the voxels of ``mask``.

    Parameters
    ----------
    image, reference : (X, Y, Z) arrays on the same grid
    mask : (X, Y, Z) bool array

    Returns
    -------
    float
        Correlation in [-1, 1]; 0 if either volume is constant in the mask.
    """
    a = np.asarray(image, dtype=np.float64)[mask]
    b = np.asarray(reference, dtype=np.float64)[mask]
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def correct_bias(
    image: ants.ANTsImage, mask: ants.ANTsImage, options: Mapping[str, object] | None = None
) -> ants.ANTsImage:
    """N4 bias-field correction estimated inside ``mask``.

    Parameters
    ----------
    image : ants.ANTsImage
        (X, Y, Z) non-negative intensities.
    mask : ants.ANTsImage
        (X, Y, Z) binary brain mask; voxels with zero intensity are left out
        of the fit (N4 works on log intensities).
    options : mapping, optional
        Overrides of :data:`DEFAULT_N4_OPTIONS`, passed to
        :func:`ants.n4_bias_field_correction`.

    Returns
    -------
    ants.ANTsImage
        Corrected image, same grid.
    """
    settings = {**DEFAULT_N4_OPTIONS, **dict(options or {})}
    fit_mask = ants.from_numpy(
        ((mask.numpy() > 0) & (image.numpy() > 0)).astype(np.float32),
        origin=image.origin, spacing=image.spacing, direction=image.direction,
    )
    return ants.n4_bias_field_correction(image, mask=fit_mask, rescale_intensities=False, verbose=False, **settings)
