"""Results on the pre-processed grid -> the subject's raw scan (inverse of the stored registration).

Pre-processing (:func:`brainuad.data.preprocess.preprocess_subject`) resamples, registers affinely onto
the template, crops / pads, downsamples and removes axial slices; every step but the registration keeps
world coordinates (the output NIfTI's affine tracks crops and voxel sizes), so a volume on the
pre-processed grid sits in *template* world space. The registration's forward transforms (template ->
subject points) are stored in the subject's QC record (``registration_transform``, see
:func:`brainuad.data.preprocess.ants_tools.transform_record`); their inverse maps every raw voxel centre
to a template point, where the pre-processed volume is sampled (:func:`ants.apply_transforms` with
``whichtoinvert``). Data that were already in template space (an empty transform list) are resampled
by world coordinates. Voxels of the raw grid outside the pre-processed field of view get 0.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from brainuad.data.nifti import load_image
from brainuad.data.preprocess.antspy import ants  # ANTsPy without plotting / statsmodels / sklearn
from brainuad.data.preprocess.ants_tools import ants_to_nifti, nifti_to_ants
from brainuad.errors import InputDataError

__all__ = ["INTERPOLATORS", "to_raw_space"]

#: ``interpolation`` name -> ANTs interpolator: ``linear`` for continuous maps, ``label`` for masks and
#: segmentations (``genericLabel``: Gaussian-weighted label voting, no fractional values).
INTERPOLATORS = {"linear": "linear", "label": "genericLabel", "nearest": "nearestNeighbor"}


def _transform_files(records: Sequence[dict], folder: Path, qc_path) -> list[str]:
    files = []
    for i, record in enumerate(records):
        if record.get("type") == "unsupported" or "parameters" not in record:
            raise InputDataError(qc_path, f"registration transform {record.get('file', i)!r} is not linear; only "
                                          "affine registrations can be inverted from the QC record")
        tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                        parameters=np.asarray(record["parameters"], dtype=np.float64),
                                        fixed_parameters=np.asarray(record["fixed_parameters"], dtype=np.float64))
        path = folder / f"tx{i}.mat"
        ants.write_transform(tx, str(path))
        files.append(str(path))
    return files


def to_raw_space(volume: nib.spatialimages.SpatialImage, raw_image: str | Path, transforms: Sequence[dict] | None,
                 *, interpolation: str = "linear", qc_path: str | Path | None = None) -> nib.Nifti1Image:
    """Resample a volume on the pre-processed grid onto the subject's raw image grid.

    Parameters
    ----------
    volume : nibabel image
        (X, Y, Z) volume with the pre-processed NIfTI's affine (template world space).
    raw_image : path
        The subject's raw scan (its grid and header become the output's).
    transforms : list of dict or None
        ``registration_transform`` of the subject's QC record: forward (template -> subject) affine
        records in :func:`ants.apply_transforms` order; ``[]`` for data already in template space.
    interpolation : {"linear", "label", "nearest"}
        See :data:`INTERPOLATORS`.
    qc_path : path, optional
        The QC record's file, named in errors.

    Returns
    -------
    nibabel.Nifti1Image
        Float32 volume on the raw grid (label interpolation gives whole numbers).

    Raises
    ------
    InputDataError
        No stored transform (a QC record written before transforms were stored: re-run pre-processing),
        or a non-linear one.
    """
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATORS)}, got {interpolation!r}")
    if transforms is None:
        raise InputDataError(qc_path or raw_image, "no registration_transform in the QC record (written by an "
                                                   "older pre-processing); re-run the preprocess rule")
    raw = load_image(raw_image)
    fixed = nifti_to_ants(nib.Nifti1Image(np.zeros(raw.shape[:3], dtype=np.float32), raw.affine), raw_image)
    moving = nifti_to_ants(volume)
    interpolator = INTERPOLATORS[interpolation]
    if not transforms:
        out = ants.resample_image_to_target(moving, fixed, interp_type=interpolator)
    else:
        with tempfile.TemporaryDirectory(prefix="brainuad-raw-space-") as folder:
            files = _transform_files(transforms, Path(folder), qc_path)
            # forward = [t_1, ..., t_n] maps template -> subject as t_1(...t_n(x)); its inverse applies
            # t_1^-1 first, so the list is reversed and every file inverted
            out = ants.apply_transforms(fixed, moving, transformlist=files[::-1], whichtoinvert=[True] * len(files),
                                        interpolator=interpolator, defaultvalue=0)
    data = out.numpy().astype(np.float32)
    result = nib.Nifti1Image(data, raw.affine)
    result.header.set_xyzt_units("mm", "sec")
    return result
