"""The steps of :func:`brainuad.data.preprocess.preprocess_subject`, in the order it runs them.

Each step takes images or arrays and the :class:`~brainuad.data.preprocess.options.PreprocessOptions`
and returns new ones (inputs are never modified) plus, where it measures something, a fragment of the
QC record (a dict whose keys are documented in :func:`~brainuad.data.preprocess.preprocess_subject`).

1. :func:`load_subject` -- raw image, label (0 / 1 lesion / 2 ignore) and native brain mask;
2. :func:`to_grid` -- isotropic ``spacing_mm`` resampling of the image;
3. :func:`register` (+ :func:`registration_qc`) -- affine registration onto the template grid, or
   :func:`stay_in_input_space` for data already in template space: the :class:`WorkingGrid`;
4. :func:`apply_brain_mask` -- skull stripping by the brain mask, labels outside it set to 0;
5. :func:`bias_correct` -- N4 inside the mask;
6. :func:`to_ras` then :func:`crop_to_brain`, :func:`normalise_intensities`,
   :func:`downsample_volumes`, :func:`crop_axial_slices` on canonical RAS arrays;
7. :func:`write_outputs`.

Volumes travel as a dict ``{"image", "mask", "seg", "ignore"}`` of (X, Y, Z) arrays sharing one
affine: the image float32, the others uint8 0/1 (labels: nearest-neighbour resampling, zero outside
the brain mask).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from brainuad.data.preprocess.antspy import ants  # ANTsPy without plotting / statsmodels / sklearn
import nibabel as nib
import numpy as np

from brainuad.data.labels import label_arrays
from brainuad.data.nifti import check_brain_mask, check_finite, check_same_grid, load_image, read_volume
from brainuad.data.nifti import save_nifti
from brainuad.data.preprocess.ants_tools import (
    REG_MASK_MARGIN_MM,
    ants_to_nifti,
    correct_bias,
    correlation_in_mask,
    native_volume_scale,
    nifti_to_ants,
    transform_record,
    register_affine,
    resample_isotropic,
)
from brainuad.data.preprocess.arrays import (
    bounding_box_centre,
    crop_or_pad,
    downsample_volume,
    normalise_percentiles,
    remove_axial_slices,
)
from brainuad.data.preprocess.options import PreprocessOptions
from brainuad.data.preprocess.skull_strip import run_skull_strip_command

__all__ = [
    "RawSubject",
    "WorkingGrid",
    "apply_brain_mask",
    "bias_correct",
    "crop_axial_slices",
    "crop_to_brain",
    "downsample_volumes",
    "load_subject",
    "normalise_intensities",
    "register",
    "registration_qc",
    "stay_in_input_space",
    "to_grid",
    "to_ras",
    "tool_versions",
    "write_outputs",
]

Template = tuple[ants.ANTsImage, ants.ANTsImage]
Volumes = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class RawSubject:
    """A validated raw scan with its label and native brain mask, all on the raw grid.

    Attributes
    ----------
    image : nibabel.Nifti1Image
        (X, Y, Z) float32 raw image.
    image_path : str or Path
        Its file (named in errors).
    label : (X, Y, Z) uint8 ndarray or None
        0 background, 1 lesion, 2 ignore; None without a label file.
    label_path : str, Path or None
        The label's file.
    brain_mask : (X, Y, Z) bool ndarray or None
        Brain mask known before registration (shipped file, non-zero voxels or external tool);
        None when the template's brain mask is to be used.
    """

    image: nib.Nifti1Image
    image_path: str | Path
    label: np.ndarray | None
    label_path: str | Path | None
    brain_mask: np.ndarray | None

    def label_image(self) -> ants.ANTsImage | None:
        """The label as a float ANTs image in the raw image's space (None without a label)."""
        return _on_raw_grid(self.label, self.image, self.label_path)

    def brain_mask_image(self) -> ants.ANTsImage | None:
        """The native brain mask as a float 0/1 ANTs image in the raw image's space (or None)."""
        return _on_raw_grid(self.brain_mask, self.image, self.image_path)


@dataclasses.dataclass(frozen=True)
class WorkingGrid:
    """Image, label and brain mask on the working grid (the template's, or the image's own).

    Attributes
    ----------
    reference : ants.ANTsImage
        An image on the grid (origin, spacing, direction), shape (X, Y, Z).
    image : (X, Y, Z) float32 ndarray
        B-spline interpolated intensities (may be slightly negative).
    label : (X, Y, Z) float32 ndarray or None
        Label code (0 / 1 / 2, ``genericLabel`` interpolation); None without a label.
    brain_mask : (X, Y, Z) bool ndarray
    template, template_mask : (X, Y, Z) float32 / bool ndarrays or None
        Template intensities and brain mask on this grid, for the QC correlations; None when no
        template is involved.
    """

    reference: ants.ANTsImage
    image: np.ndarray
    label: np.ndarray | None
    brain_mask: np.ndarray
    template: np.ndarray | None = None
    template_mask: np.ndarray | None = None

    def template_correlation(self, image: np.ndarray) -> float | None:
        """Pearson r of an (X, Y, Z) image with the template inside its brain mask (None without one)."""
        if self.template is None:
            return None
        return correlation_in_mask(image, self.template, self.template_mask)


# --------------------------------------------------------------------------- 1. load


def load_subject(
    image_path: str | Path,
    options: PreprocessOptions,
    *,
    seg_path: str | Path | None = None,
    brain_mask_path: str | Path | None = None,
    skull_stripped: bool = False,
    lesion_values: str | tuple[int, ...] = "",
    ignore_values: str | tuple[int, ...] = "",
    tmpdir: str | Path | None = None,
    threads: int = 1,
) -> tuple[RawSubject, dict]:
    """Validate and load a raw image, its label and its native brain mask.

    The native brain mask is, first that applies: the file ``brain_mask_path``; the non-zero
    voxels of the input (``skull_stripped`` or ``skull_strip`` method ``"none"``); the mask of the
    external tool (method ``"hd-bet"``, run in a private folder inside ``tmpdir``); else None
    (method ``"template"``: the template's mask is used after registration).

    Parameters
    ----------
    image_path : str or Path
        Raw 3D image, read with :func:`brainuad.data.nifti.load_image`.
    options : PreprocessOptions
        Only ``skull_strip`` is used.
    seg_path : str or Path, optional
        Raw label on the image's grid, split by :func:`brainuad.data.labels.label_arrays`.
    brain_mask_path : str or Path, optional
        Brain mask shipped with the data, on the image's grid.
    skull_stripped : bool
        The image is already skull-stripped.
    lesion_values, ignore_values : str or tuple of int
        The manifest's ``seg_lesion_values`` / ``seg_ignore_values``.
    tmpdir : str or Path, optional
        Parent of the external tool's work folder.
    threads : int
        ``{threads}`` of the external tool's command.

    Returns
    -------
    RawSubject
    dict
        QC fragment: ``lesion_voxels_input``, ``ignore_voxels_input``, ``brain_mask_source``
        (``file``, ``nonzero``, ``hd-bet`` or ``template``).

    Raises
    ------
    InputDataError
        Invalid image, label or brain mask; label or mask not on the image's grid.
    """
    raw = load_image(image_path)
    label = None if seg_path is None else _label_code(seg_path, raw, image_path, lesion_values, ignore_values)
    qc = {"lesion_voxels_input": 0 if label is None else int((label == 1).sum()),
          "ignore_voxels_input": 0 if label is None else int((label == 2).sum())}
    method = options.skull_strip["method"]
    mask = None
    if brain_mask_path is not None:
        mask, qc["brain_mask_source"] = _load_brain_mask(brain_mask_path, raw, image_path), "file"
    elif skull_stripped or method == "none":
        mask, qc["brain_mask_source"] = np.asarray(raw.dataobj) != 0, "nonzero"
    elif method == "hd-bet":
        workdir = tempfile.mkdtemp(prefix="brainuad-skullstrip-", dir=None if tmpdir is None else str(tmpdir))
        try:
            mask = run_skull_strip_command(options.skull_strip["command"], image_path, raw, workdir, threads=threads)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        qc["brain_mask_source"] = "hd-bet"
    else:
        qc["brain_mask_source"] = "template"
    if mask is not None:
        check_brain_mask(mask, brain_mask_path or image_path)
    return RawSubject(raw, image_path, label, seg_path, mask), qc


def _label_code(
    seg_path: str | Path, raw: nib.Nifti1Image, image_path: str | Path, lesion_values, ignore_values
) -> np.ndarray:
    """Raw label -> uint8 array on the raw grid: 1 = lesion, 2 = ignore, 0 = background."""
    lesion, ignore = label_arrays(seg_path, lesion_values, ignore_values)
    header = nib.load(str(seg_path))
    check_same_grid(seg_path, lesion.shape, header.affine, image_path, raw.shape[:3], raw.affine)
    code = lesion.astype(np.uint8)
    if ignore is not None:
        code[ignore > 0] = 2
    return code


def _load_brain_mask(path: str | Path, raw: nib.Nifti1Image, image_path: str | Path) -> np.ndarray:
    """A brain mask shipped with the data, on the raw image's grid -> bool array."""
    data, affine = read_volume(Path(path))
    check_finite(data, Path(path))
    check_same_grid(path, data.shape, affine, image_path, raw.shape[:3], raw.affine)
    return data > 0


def _on_raw_grid(array: np.ndarray | None, raw: nib.Nifti1Image, path: str | Path | None) -> ants.ANTsImage | None:
    if array is None:
        return None
    return nifti_to_ants(nib.Nifti1Image(array.astype(np.float32), raw.affine), path)


# --------------------------------------------------------------------------- 2.-3. working grid


def to_grid(subject: RawSubject, options: PreprocessOptions) -> ants.ANTsImage:
    """The raw image resampled (B-spline) to isotropic ``options.spacing_mm`` on its own field of view.

    Returns
    -------
    ants.ANTsImage
        About ``(X, Y, Z) * raw_spacing / spacing_mm`` voxels, in the raw image's world space.

    Raises
    ------
    InputDataError
        The raw affine cannot be represented as an ITK image.
    """
    return resample_isotropic(nifti_to_ants(subject.image, subject.image_path), options.spacing_mm)


def register(
    subject: RawSubject,
    image: ants.ANTsImage,
    template: Template,
    options: PreprocessOptions,
    *,
    tmpdir: str | Path | None = None,
) -> tuple[WorkingGrid, dict]:
    """Register ``image`` to the template and bring image, label and native brain mask onto its grid.

    The metric is evaluated inside the template mask dilated by ``REG_MASK_MARGIN_MM``. The image
    is warped with B-splines, the label and the native mask straight from the raw grid with
    ``genericLabel``. ANTs' files live in a private folder inside ``tmpdir`` that is removed before
    returning, also on errors.

    Parameters
    ----------
    subject : RawSubject
    image : ants.ANTsImage
        The :func:`to_grid` image.
    template : (ants.ANTsImage, ants.ANTsImage)
        Template image and brain mask, from
        :func:`~brainuad.data.preprocess.ants_tools.load_registration_template`.
    options : PreprocessOptions
        ``registration``, ``reg_iterations``, ``reg_shrink_factors``, ``reg_smoothing_sigmas``,
        ``reg_sampling_rate``.
    tmpdir : str or Path, optional
        Parent of the work folder (a system temporary folder by default).

    Returns
    -------
    WorkingGrid
        On the template grid; brain mask = the template's, or the warped native mask.
    dict
        QC fragment: ``brain_volume_template_ml`` (working grid) and ``brain_volume_ml`` (subject
        space: the template mask scaled by the affine's determinant, or the native mask's volume) and
        ``registration_transform`` (:func:`~brainuad.data.preprocess.ants_tools.transform_record`: the
        affine transforms, for mapping results back to the subject's raw space).
    """
    fixed, fixed_mask = template
    label, native_mask = subject.label_image(), subject.brain_mask_image()
    margin = max(1, int(round(REG_MASK_MARGIN_MM / min(fixed.spacing))))
    metric_mask = ants.iMath(fixed_mask, "MD", margin)
    workdir = tempfile.mkdtemp(prefix="brainuad-preprocess-", dir=None if tmpdir is None else str(tmpdir))
    try:
        transforms = register_affine(
            fixed, image, workdir, fixed_mask=metric_mask, transform=options.registration,
            iterations=options.reg_iterations, shrink_factors=options.reg_shrink_factors,
            smoothing_sigmas=options.reg_smoothing_sigmas, sampling_rate=options.reg_sampling_rate,
        )
        moved = ants.apply_transforms(fixed, image, transforms, interpolator="bSpline")
        moved_label, moved_mask = (None if volume is None else ants.apply_transforms(
            fixed, volume, transforms, interpolator="genericLabel") for volume in (label, native_mask))
        volume_scale = native_volume_scale(transforms)
        stored = transform_record(transforms)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    template_mask = fixed_mask.numpy() > 0
    voxel_ml = float(np.prod(fixed.spacing)) / 1000.0
    brain_mask = template_mask if moved_mask is None else moved_mask.numpy() > 0.5
    template_ml = float(brain_mask.sum() * voxel_ml)
    if subject.brain_mask is None:
        native_ml = template_ml * volume_scale
    else:
        raw_voxel_mm3 = np.prod(nib.affines.voxel_sizes(subject.image.affine))
        native_ml = float(subject.brain_mask.sum() * raw_voxel_mm3 / 1000.0)
    working = WorkingGrid(fixed, moved.numpy(), None if moved_label is None else moved_label.numpy(), brain_mask,
                          fixed.numpy(), template_mask)
    return working, {"brain_volume_template_ml": template_ml, "brain_volume_ml": native_ml,
                     "registration_transform": stored}


def registration_qc(image: ants.ANTsImage, working: WorkingGrid) -> dict:
    """Template correlation of the image placed by its header and after :func:`register`.

    Returns
    -------
    dict
        QC fragment: ``registration_correlation_before`` (``image`` linearly resampled onto the
        template grid by world coordinates) and ``registration_correlation_after``.
    """
    unregistered = ants.resample_image_to_target(image, working.reference, interp_type="linear").numpy()
    return {"registration_correlation_before": correlation_in_mask(unregistered, working.template,
                                                                   working.template_mask),
            "registration_correlation_after": working.template_correlation(working.image)}


def stay_in_input_space(
    subject: RawSubject, image: ants.ANTsImage, template: Template | None = None
) -> tuple[WorkingGrid, dict]:
    """Steps 2-3 for data already in template space: the :func:`to_grid` image's grid is the working grid.

    The label and the native brain mask are resampled onto it (``genericLabel``); without a native
    mask, the template's image and mask are resampled onto it by world coordinates (right only when
    the data are in the template's space).

    Parameters
    ----------
    subject : RawSubject
    image : ants.ANTsImage
        The :func:`to_grid` image.
    template : (ants.ANTsImage, ants.ANTsImage), optional
        Required when ``subject.brain_mask`` is None.

    Returns
    -------
    WorkingGrid
    dict
        QC fragment: ``registration_correlation_before`` (None), ``registration_correlation_after``
        (with the template, None without one), ``brain_volume_template_ml`` = ``brain_volume_ml``.
    """
    label = subject.label_image()
    moved_label = None if label is None else ants.resample_image_to_target(
        label, image, interp_type="genericLabel").numpy()
    if subject.brain_mask is None:
        if template is None:
            raise ValueError("the template's brain mask is used but no template was given")
        fixed, fixed_mask = template
        template_image = ants.resample_image_to_target(fixed, image, interp_type="linear").numpy()
        template_mask = ants.resample_image_to_target(fixed_mask, image, interp_type="nearestNeighbor").numpy() > 0.5
        working = WorkingGrid(image, image.numpy(), moved_label, template_mask, template_image, template_mask)
    else:
        brain_mask = ants.resample_image_to_target(subject.brain_mask_image(), image,
                                                   interp_type="genericLabel").numpy() > 0.5
        working = WorkingGrid(image, image.numpy(), moved_label, brain_mask)
    volume_ml = float(working.brain_mask.sum() * np.prod(image.spacing) / 1000.0)
    return working, {"registration_transform": [],  # identity: the working grid is in the input's space
                     "registration_correlation_before": None,
                     "registration_correlation_after": working.template_correlation(working.image),
                     "brain_volume_template_ml": volume_ml, "brain_volume_ml": volume_ml}


# --------------------------------------------------------------------------- 4.-5. brain mask, N4


def apply_brain_mask(working: WorkingGrid, path: str | Path) -> tuple[Volumes, dict]:
    """Skull strip: the image times the brain mask (negative values clipped); labels outside it set to 0.

    Parameters
    ----------
    working : WorkingGrid
    path : str or Path
        File named in the error for an empty brain mask.

    Returns
    -------
    dict
        Volumes ``{"image": float32, "mask", "seg", "ignore": uint8 0/1}``, (X, Y, Z) each.
    dict
        QC fragment: ``lesion_voxels_template`` (on the working grid, before masking) and
        ``lesion_voxels_outside_mask``.

    Raises
    ------
    InputDataError
        Empty brain mask.
    """
    mask = working.brain_mask
    check_brain_mask(mask, path)
    code = np.zeros(mask.shape, dtype=np.uint8) if working.label is None else np.rint(working.label)
    seg, ignore = code == 1, code == 2
    qc = {"lesion_voxels_template": int(seg.sum()), "lesion_voxels_outside_mask": int((seg & ~mask).sum())}
    volumes = {"image": (np.maximum(working.image, 0.0) * mask).astype(np.float32), "mask": mask.astype(np.uint8),
               "seg": (seg & mask).astype(np.uint8), "ignore": (ignore & mask).astype(np.uint8)}
    return volumes, qc


def bias_correct(volumes: Volumes, reference: ants.ANTsImage, options: PreprocessOptions) -> Volumes:
    """N4 bias-field correction of the image inside the brain mask (a copy when ``options.n4`` is off).

    Parameters
    ----------
    volumes : dict
        :func:`apply_brain_mask` volumes.
    reference : ants.ANTsImage
        The working grid (``WorkingGrid.reference``).
    options : PreprocessOptions
        ``n4`` and ``n4_options``.

    Returns
    -------
    dict
        Same volumes with the corrected image (float32, negative values clipped, 0 outside the mask).
    """
    if not options.n4:
        return dict(volumes)
    brain = volumes["mask"] > 0
    corrected = correct_bias(_ants_like(volumes["image"], reference), _ants_like(brain, reference),
                             options.n4_options)
    return {**volumes, "image": (np.maximum(corrected.numpy(), 0.0) * brain).astype(np.float32)}


def _ants_like(array: np.ndarray, reference: ants.ANTsImage) -> ants.ANTsImage:
    return ants.from_numpy(
        np.asarray(array, dtype=np.float32), origin=reference.origin, spacing=reference.spacing,
        direction=reference.direction,
    )


# --------------------------------------------------------------------------- 6. array steps in RAS


def to_ras(volumes: Volumes, reference: ants.ANTsImage) -> tuple[Volumes, np.ndarray]:
    """Reorder / flip every volume on the ``reference`` grid to the closest canonical RAS orientation.

    Returns
    -------
    dict
        The volumes with axis 0 towards Right, 1 Anterior, 2 Superior (same dtypes).
    (4, 4) ndarray
        Their affine.
    """
    affine = ants_to_nifti(reference).affine
    canonical = {name: nib.as_closest_canonical(nib.Nifti1Image(array, affine)) for name, array in volumes.items()}
    return ({name: np.asarray(image.dataobj) for name, image in canonical.items()},
            next(iter(canonical.values())).affine)


def crop_to_brain(volumes: Volumes, affine: np.ndarray, options: PreprocessOptions) -> tuple[Volumes, np.ndarray, dict]:
    """Crop / zero-pad every volume to ``options.crop_pad`` voxels centred on the mask's bounding box.

    Returns
    -------
    dict
        Volumes of shape ``crop_pad``.
    (4, 4) ndarray
        Their affine.
    dict
        QC fragment: ``brain_voxels_removed_by_crop`` and ``brain_voxels_before_crop`` (the brain mask's
        voxels on the working grid, for the removed fraction).
    """
    centre = bounding_box_centre(volumes["mask"])
    cropped = {name: crop_or_pad(array, affine, centre, options.crop_pad) for name, array in volumes.items()}
    boxes = {name: array for name, (array, _) in cropped.items()}
    before = int(volumes["mask"].sum())
    removed = before - int(boxes["mask"].sum())
    return boxes, cropped["mask"][1], {"brain_voxels_removed_by_crop": removed, "brain_voxels_before_crop": before}


def normalise_intensities(volumes: Volumes, options: PreprocessOptions, *, path: str | Path) -> tuple[Volumes, dict]:
    """Map the image's ``options.percentiles`` inside the mask to 0 and 1 (clipped, 0 outside the mask).

    Returns
    -------
    dict
        Same volumes with the normalised image.
    dict
        QC fragment: ``intensity_percentiles`` ``{"p<low>": value, "p<high>": value}`` before
        normalisation.

    Raises
    ------
    InputDataError
        Constant intensities inside the mask (naming ``path``).
    """
    low_q, high_q = options.percentiles
    image, (low, high) = normalise_percentiles(volumes["image"], volumes["mask"] > 0, options.percentiles, path=path)
    return {**volumes, "image": image}, {"intensity_percentiles": {f"p{low_q:g}": low, f"p{high_q:g}": high}}


def downsample_volumes(volumes: Volumes, affine: np.ndarray, options: PreprocessOptions) -> tuple[Volumes, np.ndarray]:
    """Downsample by ``options.downsample``: cubic B-spline for the image, nearest neighbour otherwise.

    The image is clipped to [0, 1] again and every volume but the mask is set to 0 outside the
    downsampled mask.

    Returns
    -------
    dict
        Volumes of ``round(shape / downsample)`` voxels.
    (4, 4) ndarray
        Their affine (same field of view).
    """
    small = {name: downsample_volume(array, affine, options.downsample, order=3 if name == "image" else 0)
             for name, array in volumes.items()}
    arrays = {name: array for name, (array, _) in small.items()}
    brain = arrays["mask"] > 0
    for name in arrays:
        if name == "image":
            arrays[name] = (np.clip(arrays[name], 0.0, 1.0) * brain).astype(np.float32)
        elif name != "mask":
            arrays[name] = arrays[name] * brain
    return arrays, small["mask"][1]


def crop_axial_slices(volumes: Volumes, affine: np.ndarray, options: PreprocessOptions) -> tuple[Volumes, np.ndarray]:
    """Remove ``options.slice_crop`` axial slices at the bottom and at the top of every volume.

    Returns
    -------
    dict
        Volumes of shape (X, Y, Z - 2 * slice_crop).
    (4, 4) ndarray
        Their affine.
    """
    kept = {name: remove_axial_slices(array, affine, options.slice_crop) for name, array in volumes.items()}
    return {name: array for name, (array, _) in kept.items()}, kept["mask"][1]


# --------------------------------------------------------------------------- 7. outputs


def write_outputs(volumes: Volumes, affine: np.ndarray, files: Mapping[str, str | Path | None]) -> dict:
    """Write the volumes (image float32, the others uint8) atomically with :func:`save_nifti`.

    Parameters
    ----------
    volumes : dict
        ``{"image", "mask", "seg", "ignore"}``.
    affine : (4, 4) ndarray
    files : mapping
        Output file per volume name; a volume whose file is None (or missing) is not written.

    Returns
    -------
    dict
        QC fragment: ``lesion_voxels_output``, ``ignore_voxels_output``, ``output_shape``,
        ``output_spacing_mm``.
    """
    for name, array in volumes.items():
        if files.get(name) is not None:
            save_nifti(array, affine, files[name], np.float32 if name == "image" else np.uint8)
    return {"lesion_voxels_output": int(volumes["seg"].sum()), "ignore_voxels_output": int(volumes["ignore"].sum()),
            "output_shape": [int(n) for n in volumes["image"].shape],
            "output_spacing_mm": [float(z) for z in nib.affines.voxel_sizes(affine)]}


def tool_versions() -> dict[str, str]:
    """Versions of the libraries the pre-processing output depends on."""
    out = {}
    for name in ("antspyx", "nibabel", "numpy", "scipy", "brainuad"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = {"antspyx": getattr(ants, "__version__", "unknown"),
                         "nibabel": nib.__version__, "numpy": np.__version__}.get(name, "unknown")
    return out
