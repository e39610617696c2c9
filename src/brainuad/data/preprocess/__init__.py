"""Per-subject MRI pre-processing with antspyx: from a raw scan to a model-ready volume.

:func:`preprocess_subject` resamples the image to isotropic ``spacing_mm``, registers it affinely
to a template (Mattes mutual information), skull strips it with a brain mask, corrects the bias
field (N4), crops / pads around the brain, normalises intensities to [0, 1] by masked percentiles,
downsamples and removes axial slices; the lesion label follows every spatial step. Data that arrive
registered or skull-stripped (manifest flags) skip those steps. The outputs are canonical RAS.

Modules: :mod:`~brainuad.data.preprocess.options` (:class:`PreprocessOptions`, the config's
``preprocess`` section), :mod:`~brainuad.data.preprocess.steps` (the steps, in order),
:mod:`~brainuad.data.preprocess.acceptance` (whether a subject is usable),
:mod:`~brainuad.data.preprocess.ants_tools` (antspyx building blocks),
:mod:`~brainuad.data.preprocess.arrays` (numpy array steps) and
:mod:`~brainuad.data.preprocess.skull_strip` (the external skull-stripping tool). Every option,
the thesis protocol and the handling of pre-processed data are described in ``config/README.md``
(section ``preprocess``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from brainuad.data.preprocess.antspy import ants  # ANTsPy without plotting / statsmodels / sklearn

from brainuad.data.preprocess.acceptance import check_acquisition, check_registration
from brainuad.data.preprocess.ants_tools import (
    REG_MASK_MARGIN_MM,
    ants_to_nifti,
    correct_bias,
    correlation_in_mask,
    load_registration_template,
    native_volume_scale,
    nifti_to_ants,
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
from brainuad.data.preprocess.options import (
    DEFAULT_N4_OPTIONS,
    DEFAULT_REG_ITERATIONS,
    DEFAULT_REG_SAMPLING_RATE,
    DEFAULT_REG_SHRINK_FACTORS,
    DEFAULT_REG_SMOOTHING_SIGMAS,
    PreprocessOptions,
)
from brainuad.data.preprocess.skull_strip import SKULL_STRIP_METHODS, run_skull_strip_command, skull_strip_settings
from brainuad.data.preprocess.steps import (
    apply_brain_mask,
    bias_correct,
    crop_axial_slices,
    crop_to_brain,
    downsample_volumes,
    load_subject,
    normalise_intensities,
    register,
    registration_qc,
    stay_in_input_space,
    to_grid,
    to_ras,
    tool_versions,
    write_outputs,
)

__all__ = [
    "DEFAULT_N4_OPTIONS",
    "DEFAULT_REG_ITERATIONS",
    "DEFAULT_REG_SAMPLING_RATE",
    "DEFAULT_REG_SHRINK_FACTORS",
    "DEFAULT_REG_SMOOTHING_SIGMAS",
    "REG_MASK_MARGIN_MM",
    "SKULL_STRIP_METHODS",
    "PreprocessOptions",
    "ants_to_nifti",
    "bounding_box_centre",
    "correct_bias",
    "correlation_in_mask",
    "crop_or_pad",
    "downsample_volume",
    "load_registration_template",
    "native_volume_scale",
    "nifti_to_ants",
    "normalise_percentiles",
    "preprocess_subject",
    "register_affine",
    "remove_axial_slices",
    "resample_isotropic",
    "run_skull_strip_command",
    "skull_strip_settings",
    "tool_versions",
]


def preprocess_subject(
    image_path: str | Path,
    out_image: str | Path,
    out_mask: str | Path,
    out_seg: str | Path,
    *,
    options: PreprocessOptions = PreprocessOptions(),
    seg_path: str | Path | None = None,
    out_ignore: str | Path | None = None,
    brain_mask_path: str | Path | None = None,
    registered: bool = False,
    skull_stripped: bool = False,
    lesion_values: str | tuple[int, ...] = "",
    ignore_values: str | tuple[int, ...] = "",
    tmpdir: str | Path | None = None,
    threads: int = 1,
) -> dict:
    """Pre-process one subject and write image, brain mask, lesion label (and ignore mask).

    Parameters
    ----------
    image_path : str or Path
        Raw 3D MR image (``.nii`` / ``.nii.gz``); never modified.
    out_image, out_mask, out_seg : str or Path
        Output files (``.nii.gz`` recommended), written atomically in canonical RAS orientation:
        image float32 in [0, 1] (0 outside the brain), mask and seg uint8 0/1 of shape
        ``(round(crop_pad / downsample)[:2], round(crop_pad[2] / downsample) - 2 * slice_crop)``
        at ``spacing_mm * downsample`` mm (exactly when divisible).
    options : PreprocessOptions
        The config's ``preprocess`` section (default: that of ``config/config.yaml``).
    seg_path : str or Path, optional
        Lesion label on the image's grid; without it an all-zero seg is written.
    out_ignore : str or Path, optional
        Where to write the ignore mask (uint8 0/1, same grid as seg; all zero without
        ``ignore_values``); not written when None.
    brain_mask_path : str or Path, optional
        Brain mask shipped with the data (on the image's grid); used instead of skull stripping.
    registered : bool
        The image is already in template space: no registration (as ``registration="none"``), the
        working grid is the image's own field of view at ``spacing_mm``.
    skull_stripped : bool
        The image is already skull-stripped: brain mask = its non-zero voxels (unless
        ``brain_mask_path`` is given).
    lesion_values, ignore_values : str or tuple of int
        The manifest's ``seg_lesion_values`` / ``seg_ignore_values`` (``""`` = every value > 0 /
        none), see :func:`brainuad.data.labels.label_arrays`.
    tmpdir : str or Path, optional
        Folder in which private work folders for ANTs and the skull-stripping tool are created
        (a fresh system temporary folder by default); they are removed afterwards.
    threads : int
        ITK threads, set through ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` (ITK reads it when it
        first starts threads in a process).

    Returns
    -------
    dict
        JSON-serialisable quality-control record: ``image``, ``seg``, ``registered``,
        ``skull_stripped``, ``skull_strip`` (method and command), ``brain_mask_source``
        (``template``, ``file``, ``nonzero``, ``hd-bet``), ``registration_correlation_before`` /
        ``_after`` / ``_after_n4`` (Pearson r with the template inside its brain mask: raw image
        placed by its header, registered, registered and bias-corrected; None where no
        registration or no template is involved), ``brain_volume_ml`` (subject space),
        ``brain_volume_template_ml`` (working grid), ``intensity_percentiles`` (before
        normalisation), ``lesion_voxels_input`` / ``_template`` / ``_outside_mask`` (set to 0) /
        ``_output``, ``ignore_voxels_input`` / ``_output``, ``brain_voxels_removed_by_crop``,
        ``output_shape``, ``output_spacing_mm``, ``antspyx_version``, ``tool_versions`` and
        ``seconds`` (per step and total).

    Raises
    ------
    InputDataError
        Invalid input image, label or brain mask (see :mod:`brainuad.data.nifti`); an almost empty,
        too anisotropic or too small image, or a failed registration (see
        :mod:`~brainuad.data.preprocess.acceptance`); empty brain mask after registration or skull
        stripping, constant intensities in the brain.
    ValueError, RuntimeError
        Bad options; the external skull-stripping tool is missing or fails.
    """
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(threads))
    timer = _StepTimer()
    in_template_space = bool(registered) or not options.registers
    qc: dict = {"image": str(image_path), "seg": None if seg_path is None else str(seg_path),
                "registered": in_template_space, "skull_stripped": bool(skull_stripped),
                "skull_strip": dict(options.skull_strip)}
    subject, fragment = load_subject(image_path, options, seg_path=seg_path, brain_mask_path=brain_mask_path,
                                     skull_stripped=skull_stripped, lesion_values=lesion_values,
                                     ignore_values=ignore_values, tmpdir=tmpdir, threads=threads)
    qc |= fragment
    check_acquisition(subject.image, image_path, options)
    timer.lap("load")
    image = to_grid(subject, options)
    timer.lap("resample")
    template = None
    if not in_template_space or subject.brain_mask is None:
        template = load_registration_template(options.template, options.template_mask, options.spacing_mm)
        timer.lap("template")
    if in_template_space:
        working, fragment = stay_in_input_space(subject, image, template)
        timer.lap("register")
    else:
        working, fragment = register(subject, image, template, options, tmpdir=tmpdir)
        timer.lap("register")
        fragment |= registration_qc(image, working)
        timer.lap("registration_qc")
    qc |= fragment

    volumes, fragment = apply_brain_mask(working, image_path)
    qc |= fragment
    timer.lap("mask")
    volumes = bias_correct(volumes, working.reference, options)
    timer.lap("n4")
    qc["registration_correlation_after_n4"] = working.template_correlation(volumes["image"])

    volumes, affine = to_ras(volumes, working.reference)
    volumes, affine, fragment = crop_to_brain(volumes, affine, options)
    qc |= fragment
    timer.lap("crop")
    volumes, fragment = normalise_intensities(volumes, options, path=image_path)
    qc |= fragment
    if not in_template_space:  # after normalisation: a constant image is reported as such
        check_registration(abs(qc["registration_correlation_after_n4"]), image_path, options)
    timer.lap("normalise")
    volumes, affine = downsample_volumes(volumes, affine, options)
    timer.lap("downsample")
    volumes, affine = crop_axial_slices(volumes, affine, options)
    timer.lap("slice_crop")
    qc |= write_outputs(volumes, affine, {"image": out_image, "mask": out_mask, "seg": out_seg, "ignore": out_ignore})
    timer.lap("write")

    qc["antspyx_version"] = ants.__version__
    qc["tool_versions"] = tool_versions()
    qc["seconds"] = {**timer.seconds, "total": round(sum(timer.seconds.values()), 4)}
    return qc


class _StepTimer:
    """Collects wall-clock seconds per named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 4)
        self._last = now
