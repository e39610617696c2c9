"""Safe, validated NIfTI input/output.

Every loader here reads the file once, read-only, into memory and returns an
image that is detached from the file, so raw inputs are never modified (not
even their access through a memory map). Problems with a file are reported as
:class:`brainuad.errors.InputDataError` naming the file and what is wrong with
it, in words meant for the person who supplied the data.

Conventions
-----------
* Arrays are indexed ``[i, j, k]`` in the order of the file; the 4x4 ``affine``
  maps voxel indices to world (RAS+, millimetre) coordinates as in nibabel.
* Images are returned as float32, labels and masks as uint8 0/1.
"""

from __future__ import annotations

import os
import uuid
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from brainuad.errors import InputDataError

__all__ = [
    "MAX_VOXEL_SIZE_MM",
    "MIN_VOXEL_SIZE_MM",
    "READ_ERRORS",
    "check_finite",
    "check_geometry",
    "describe",
    "raw_voxel_size",
    "read_volume",
    "load_image",
    "load_label",
    "check_brain_mask",
    "check_same_grid",
    "save_nifti",
]

#: Largest voxel edge (mm) accepted; anything larger is a corrupt header, not an MRI.
MAX_VOXEL_SIZE_MM = 20.0
#: Smallest voxel edge (mm) accepted; anything smaller is a corrupt header or a unit mix-up (m, um).
MIN_VOXEL_SIZE_MM = 0.1

#: Default absolute tolerance (mm for translations, unitless for rotation/zoom
#: entries) when comparing the affines of an image and its label.
AFFINE_ATOL = 1e-3

_NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: Errors nibabel, gzip and numpy raise on truncated, corrupt or foreign files.
READ_ERRORS = (
    nib.filebasedimages.ImageFileError,
    nib.spatialimages.HeaderDataError,
    EOFError,
    OSError,
    zlib.error,
    ValueError,
    TypeError,
)


def describe(error: BaseException) -> str:
    """First line (at most 200 characters) of an error's message, or its type name when it has none."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


def read_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D volume and check its header, without any content checks.

    Parameters
    ----------
    path : str or Path
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    data : (X, Y, Z) float32 ndarray
        Voxel values after the header's scaling; a trailing singleton 4th (or
        higher) dimension is squeezed.
    affine : (4, 4) float64 ndarray
        Voxel-to-world (RAS+, mm) transform.

    Raises
    ------
    InputDataError
        Missing file, not a readable NIfTI (truncated, corrupt, other format),
        not 3D, invalid affine, voxel size outside [``MIN_VOXEL_SIZE_MM``,
        ``MAX_VOXEL_SIZE_MM``], a scale factor that overflows float32.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(path, "file does not exist")
    if not path.is_file():
        raise InputDataError(path, "is not a regular file")
    try:
        # mmap=False: read into memory; nibabel opens the file with mode 'rb'.
        image = nib.load(str(path), mmap=False)
    except READ_ERRORS as error:
        raise InputDataError(path, f"cannot be read as NIfTI ({describe(error)})") from error
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputDataError(path, f"is a {type(image).__name__}, not a NIfTI-1/2 image")
    try:
        with np.errstate(over="ignore"):  # an overflowing scale factor is reported by _check_scaling
            data = image.get_fdata(dtype=np.float32)
    except READ_ERRORS as error:
        raise InputDataError(
            path, f"voxel data cannot be read; the file is truncated or corrupt ({describe(error)})"
        ) from error
    _check_scaling(image, data, path)
    data = _squeeze_to_3d(data, path)
    affine = np.asarray(image.affine, dtype=np.float64)
    check_geometry(affine, raw_voxel_size(image, path), path)
    return np.ascontiguousarray(data), affine


def raw_voxel_size(image: nib.spatialimages.SpatialImage, path: Path) -> np.ndarray:
    """pixdim[1:4] exactly as stored: nibabel's loader silently turns 0 into 1."""
    try:
        with nib.openers.ImageOpener(str(path)) as stream:
            header = type(image.header).from_fileobj(stream, check=False)
    except READ_ERRORS as error:  # pragma: no cover - the image was just read
        raise InputDataError(path, f"header cannot be read ({describe(error)})") from error
    return np.asarray(header["pixdim"][1:4], dtype=np.float64)


def _check_scaling(image: nib.spatialimages.SpatialImage, data: np.ndarray, path: Path) -> None:
    """Raise when the header's scale factor (scl_slope / scl_inter) turns finite stored values into Inf."""
    if np.all(np.isfinite(data)):
        return
    slope, inter = float(image.dataobj.slope), float(image.dataobj.inter)
    if slope == 1.0 and inter == 0.0:
        return
    stored = np.asanyarray(image.dataobj.get_unscaled()).astype(np.float64)
    if not np.all(np.isfinite(stored)):
        return
    peak = float(np.abs(stored).max() * abs(slope) + abs(inter))
    raise InputDataError(
        path,
        f"scale factor {slope:g} overflows float32: the stored {image.get_data_dtype()} values scaled by "
        f"scl_slope {slope:g} / scl_inter {inter:g} reach {peak:.3g}, more than the float32 maximum "
        f"{float(np.finfo(np.float32).max):.3g} (corrupt header?)",
    )


def _squeeze_to_3d(data: np.ndarray, path: Path) -> np.ndarray:
    if data.ndim < 3:
        raise InputDataError(path, f"is {data.ndim}D (shape {data.shape}); a 3D volume is required")
    extra = data.shape[3:]
    if any(size != 1 for size in extra):
        raise InputDataError(
            path,
            f"is {data.ndim}D with shape {data.shape}; a single 3D volume is required "
            "(split time series / multi-channel files into one file per volume)",
        )
    return data.reshape(data.shape[:3])


def _format_zooms(zooms: np.ndarray) -> str:
    return " x ".join(f"{float(z):.4g}" for z in zooms)


def check_geometry(affine: np.ndarray, header_zooms, path: Path) -> None:
    """Check that a (4, 4) affine is finite and non-singular and that both voxel sizes (the (3,)
    ``header_zooms`` and the affine's column norms) lie in [``MIN_VOXEL_SIZE_MM``, ``MAX_VOXEL_SIZE_MM``] mm.

    Raises
    ------
    InputDataError
        Naming ``path`` and the offending value.
    """
    if not np.all(np.isfinite(affine)):
        raise InputDataError(path, "the affine (voxel-to-world transform) contains NaN/Inf")
    affine_zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    header_zooms = np.asarray(header_zooms, dtype=np.float64)
    for name, zooms in (("header pixdim", header_zooms), ("affine", affine_zooms)):
        if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
            raise InputDataError(path, f"voxel size from the {name} is {_format_zooms(zooms)} mm; must be > 0 mm")
        if np.any(zooms > MAX_VOXEL_SIZE_MM):
            raise InputDataError(
                path,
                f"voxel size from the {name} is {_format_zooms(zooms)} mm; "
                f"more than {MAX_VOXEL_SIZE_MM:g} mm is not a plausible MRI voxel (corrupt header?)",
            )
        if np.any(zooms < MIN_VOXEL_SIZE_MM):
            raise InputDataError(
                path,
                f"voxel size from the {name} is {_format_zooms(zooms)} mm: voxel size {float(zooms.min()):g} mm "
                f"is below the minimum {MIN_VOXEL_SIZE_MM:g} mm (corrupt header, or units other than mm?)",
            )
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputDataError(path, "the affine is singular (degenerate voxel axes)")


def check_finite(data: np.ndarray, path: Path) -> None:
    """Raise InputDataError naming ``path`` when ``data`` (any shape) has a NaN or Inf voxel."""
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputDataError(path, f"contains {int(bad.sum())} NaN/Inf voxel(s)")


def load_image(path: str | Path) -> nib.Nifti1Image:
    """Load and validate a 3D MR image.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz`` file. It is opened read-only and read fully
        into memory; the file is never written.

    Returns
    -------
    nibabel.Nifti1Image
        In-memory image (detached from the file) with float32 data of shape
        (X, Y, Z) and the file's affine. A 4D file whose 4th dimension is 1
        is squeezed to 3D.

    Raises
    ------
    InputDataError
        Missing file; unreadable, truncated or non-NIfTI file; 4D (or higher)
        image with more than one volume; NaN/Inf voxels; voxel size <= 0 or
        > ``MAX_VOXEL_SIZE_MM`` mm; all-zero image.
    """
    path = Path(path)
    data, affine = read_volume(path)
    check_finite(data, path)
    if not np.any(data):
        raise InputDataError(path, "image is empty (all voxels are zero)")
    return _make_image(data, affine)


def check_same_grid(
    path: str | Path,
    shape: tuple[int, ...],
    affine: np.ndarray,
    reference_path: str | Path,
    reference_shape: tuple[int, ...],
    reference_affine: np.ndarray,
    *,
    atol: float = AFFINE_ATOL,
) -> None:
    """Raise if two volumes are not on the same voxel grid.

    Parameters
    ----------
    path, reference_path : str or Path
        Files being compared (both are named in the error).
    shape, reference_shape : tuple of int
        Array shapes (X, Y, Z).
    affine, reference_affine : (4, 4) ndarray
        Voxel-to-world transforms.
    atol : float
        Absolute tolerance on every affine entry (mm for the translation).

    Raises
    ------
    InputDataError
        Shapes differ, or any affine entry differs by more than ``atol``.
    """
    if tuple(shape) != tuple(reference_shape):
        raise InputDataError(
            path,
            f"shape {tuple(shape)} does not match the shape {tuple(reference_shape)} of {reference_path}",
        )
    difference = np.abs(np.asarray(affine) - np.asarray(reference_affine)).max()
    if not difference <= atol:
        raise InputDataError(
            path,
            f"affine does not match that of {reference_path} (largest difference {difference:.4g} > {atol:g}); "
            "the label must be on the image's voxel grid",
        )


def load_label(
    path: str | Path,
    reference: str | Path | nib.spatialimages.SpatialImage,
    *,
    allow_empty: bool = True,
    atol: float = AFFINE_ATOL,
) -> np.ndarray:
    """Load a lesion label on the grid of its image, fused to binary.

    Parameters
    ----------
    path : str or Path
        Label file (``.nii`` / ``.nii.gz``); read-only.
    reference : str, Path or nibabel image
        The image the label belongs to: a file (loaded with
        :func:`load_image`) or an already loaded image. Its shape and affine
        must match the label's.
    allow_empty : bool
        If False, an all-zero label raises; by default an empty label is a
        valid "no lesion" annotation (e.g. a healthy slice / subject).
    atol : float
        Absolute tolerance on affine entries, see :func:`check_same_grid`.

    Returns
    -------
    (X, Y, Z) uint8 ndarray
        1 where the label is > 0, else 0. Multi-class labels (e.g. BraTS
        1/2/4) are fused with a warning naming the file.

    Raises
    ------
    InputDataError
        Any :func:`load_image` file problem (except emptiness), negative
        values, grid mismatch with ``reference`` (names both files), or an
        empty label when ``allow_empty`` is False.
    """
    path = Path(path)
    reference_path, reference_image = _resolve_reference(reference)
    data, affine = read_volume(path)
    check_finite(data, path)
    check_same_grid(
        path, data.shape, affine, reference_path, reference_image.shape[:3], reference_image.affine, atol=atol
    )
    if np.any(data < 0):
        raise InputDataError(path, "label contains negative values")
    values = np.unique(data)
    if not set(values.tolist()) <= {0.0, 1.0}:
        shown = ", ".join(f"{v:g}" for v in values[:10]) + (", ..." if values.size > 10 else "")
        warnings.warn(
            f"{path}: label is not binary (values {shown}); fusing all values > 0 into one lesion class",
            UserWarning,
            stacklevel=2,
        )
    label = (data > 0).astype(np.uint8)
    if not allow_empty and not label.any():
        raise InputDataError(path, "label is empty (no lesion voxel) but a lesion is required here")
    return label


def _resolve_reference(reference) -> tuple[str, nib.spatialimages.SpatialImage]:
    if isinstance(reference, (str, Path)):
        return str(reference), load_image(reference)
    name = reference.get_filename() or "the reference image"
    return str(name), reference


def check_brain_mask(mask: np.ndarray, path: str | Path, *, min_voxels: int = 1) -> None:
    """Raise if a brain mask is (nearly) empty.

    Parameters
    ----------
    mask : (X, Y, Z) array
        Brain mask; non-zero voxels are brain.
    path : str or Path
        File the mask belongs to (named in the error).
    min_voxels : int
        Fewest brain voxels accepted.

    Raises
    ------
    InputDataError
        Fewer than ``min_voxels`` non-zero voxels.
    """
    count = int(np.count_nonzero(mask))
    if count < min_voxels:
        raise InputDataError(
            path,
            f"brain mask is empty ({count} voxel(s), at least {min_voxels} required); "
            "registration to the template or skull stripping failed",
        )


def _make_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    return image


def _nifti_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(_NIFTI_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{path}: output must end with .nii or .nii.gz")


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path, dtype=np.float32) -> Path:
    """Write a 3D array as NIfTI atomically.

    The data are written to a temporary file next to ``path`` and moved into
    place with :func:`os.replace`, so readers never see a partial file and a
    failed write leaves any previous file untouched. Parent folders are
    created.

    Parameters
    ----------
    array : (X, Y, Z) array
        Voxel values; cast to ``dtype`` (integer dtypes are rounded first).
    affine : (4, 4) array
        Voxel-to-world (RAS+, mm) transform; stored as both qform and sform.
    path : str or Path
        Destination ending in ``.nii`` or ``.nii.gz`` (gzip-compressed).
    dtype : numpy dtype
        On-disk data type, e.g. ``np.float32`` for images, ``np.uint8`` for
        masks and labels.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    suffix = _nifti_suffix(path)
    dtype = np.dtype(dtype)
    data = np.asarray(array)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(data.dtype, np.integer):
        data = np.rint(data)
    image = _make_image(np.ascontiguousarray(data.astype(dtype)), np.asarray(affine, dtype=np.float64))
    image.set_data_dtype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name[: -len(suffix)]
    temporary = path.with_name(f".{stem}.{uuid.uuid4().hex}.tmp{suffix}")
    try:
        nib.save(image, str(temporary))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path
