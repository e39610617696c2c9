"""Whether a subject is usable at all: raw acquisition checks before registration, the registration's
similarity with the template after it. A failure raises :class:`~brainuad.errors.InputDataError` naming
the raw image, so that the subject is excluded (or the run stops for a ``strict`` source)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brainuad.data.preprocess.options import PreprocessOptions
from brainuad.errors import InputDataError

__all__ = ["MIN_FIELD_OF_VIEW_MM", "check_acquisition", "check_registration"]

#: Smallest field of view (mm) along every axis of a raw image: a brain is 120-180 mm in each direction.
MIN_FIELD_OF_VIEW_MM = 50.0


def _mm(values) -> str:
    return " x ".join(f"{float(v):.4g}" for v in values)


def check_acquisition(image: nib.Nifti1Image, path: str | Path, options: PreprocessOptions) -> None:
    """Reject a raw image that is almost empty, too anisotropic or too small to hold a brain.

    Parameters
    ----------
    image : nibabel.Nifti1Image
        (X, Y, Z) raw image (as loaded by :func:`brainuad.data.nifti.load_image`).
    path : str or Path
        Its file, named in the error.
    options : PreprocessOptions
        ``min_nonzero_fraction`` and ``max_voxel_anisotropy``.

    Raises
    ------
    InputDataError
        Fewer non-zero voxels than ``min_nonzero_fraction``; largest / smallest voxel edge above
        ``max_voxel_anisotropy``; field of view (voxels x voxel size) below
        :data:`MIN_FIELD_OF_VIEW_MM` along an axis.
    """
    data = np.asarray(image.dataobj)
    nonzero = int(np.count_nonzero(data))
    fraction = nonzero / data.size
    if fraction < options.min_nonzero_fraction:
        raise InputDataError(path, f"image is almost empty: {nonzero} of {data.size} voxels ({fraction:.2g}) are "
                                   f"non-zero, fewer than min_nonzero_fraction {options.min_nonzero_fraction:g}")
    zooms = nib.affines.voxel_sizes(image.affine)
    ratio = float(zooms.max() / zooms.min())
    if ratio > options.max_voxel_anisotropy:
        raise InputDataError(path, f"voxel size {_mm(zooms)} mm is too anisotropic (largest / smallest edge "
                                   f"{ratio:.3g} > max_voxel_anisotropy {options.max_voxel_anisotropy:g}); "
                                   "registration of such slices is unreliable")
    field_of_view = zooms * np.asarray(image.shape[:3])
    if field_of_view.min() < MIN_FIELD_OF_VIEW_MM:
        raise InputDataError(path, f"field of view {_mm(field_of_view)} mm ({_mm(image.shape[:3])} voxels of "
                                   f"{_mm(zooms)} mm) is below {MIN_FIELD_OF_VIEW_MM:g} mm along an axis: it "
                                   "cannot hold a brain (wrong voxel size in the header?)")


def check_registration(similarity: float | None, path: str | Path, options: PreprocessOptions) -> None:
    """Reject a subject whose registration to the template failed.

    Parameters
    ----------
    similarity : float or None
        |Pearson r| with the template inside its brain mask (QC ``registration_similarity``); None
        when no template is involved (nothing is checked).
    path : str or Path
        Raw image, named in the error.
    options : PreprocessOptions
        ``min_registration_similarity``.

    Raises
    ------
    InputDataError
        ``similarity`` below ``min_registration_similarity``.
    """
    if similarity is not None and similarity < options.min_registration_similarity:
        raise InputDataError(path, f"registration to the template failed: |r| with the template inside its brain "
                                   f"mask is {similarity:.3f}, below min_registration_similarity "
                                   f"{options.min_registration_similarity:g} (a well registered brain scan "
                                   "reaches 0.5-0.9; a corrupt image, e.g. with intensity spikes, or one that "
                                   "is no brain scan stays near 0)")
