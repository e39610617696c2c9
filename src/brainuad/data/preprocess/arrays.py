"""Array steps on the working grid: crop / pad around the brain, percentile normalisation,
downsampling and removal of axial slices (numpy / scipy only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainuad.errors import InputDataError

__all__ = [
    "bounding_box_centre",
    "crop_or_pad",
    "downsample_volume",
    "normalise_percentiles",
    "remove_axial_slices",
]


def bounding_box_centre(mask: np.ndarray) -> np.ndarray:
    """Centre of the bounding box of the non-zero voxels.

    Parameters
    ----------
    mask : (X, Y, Z) array

    Returns
    -------
    (3,) float ndarray
        Voxel coordinates of the box centre (half-integers for even extents).
    """
    indices = np.argwhere(mask)
    return (indices.min(axis=0) + indices.max(axis=0)) / 2.0


def crop_or_pad(
    array: np.ndarray, affine: np.ndarray, centre: np.ndarray, size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a box of ``size`` voxels centred on ``centre``, zero-padding outside.

    Parameters
    ----------
    array : (X, Y, Z) ndarray
    affine : (4, 4) ndarray
        Voxel-to-world transform of ``array``.
    centre : (3,) array
        Voxel coordinates the box is centred on.
    size : 3 ints
        Output shape (X', Y', Z').

    Returns
    -------
    box : (X', Y', Z') ndarray, same dtype
    box_affine : (4, 4) ndarray
        Affine of ``box``: voxel ``(0, 0, 0)`` of ``box`` is voxel ``start``
        of ``array`` with ``start = round(centre - (size - 1) / 2)``.
    """
    size = np.asarray(size, dtype=int)
    start = np.floor(np.asarray(centre) - (size - 1) / 2.0 + 0.5).astype(int)
    box = np.zeros(tuple(size), dtype=array.dtype)
    source = tuple(slice(max(s, 0), min(s + n, dim)) for s, n, dim in zip(start, size, array.shape))
    target = tuple(slice(src.start - s, src.stop - s) for src, s in zip(source, start))
    box[target] = array[source]
    return box, affine @ nib.affines.from_matvec(np.eye(3), start)


def normalise_percentiles(
    image: np.ndarray, mask: np.ndarray, percentiles: Sequence[float] = (1, 99), *, path: str | Path = "image"
) -> tuple[np.ndarray, tuple[float, float]]:
    """Map the masked ``percentiles`` to 0 and 1, clip to [0, 1], zero outside the mask.

    Parameters
    ----------
    image : (X, Y, Z) float array
    mask : (X, Y, Z) bool array
    percentiles : (low, high)
        Percentiles of the intensities inside ``mask`` mapped to 0 and 1.
    path : str or Path
        File named in the error for a constant image.

    Returns
    -------
    normalised : (X, Y, Z) float32 ndarray in [0, 1]
    (p_low, p_high) : tuple of float
        The intensity percentiles before normalisation.
    """
    low, high = np.percentile(image[mask], percentiles)
    if not high > low:
        raise InputDataError(
            path, f"intensities inside the brain mask are constant (p{percentiles[0]} = p{percentiles[1]} = {low:g})"
        )
    normalised = np.clip((image - low) / (high - low), 0.0, 1.0) * mask
    return normalised.astype(np.float32), (float(low), float(high))


def downsample_volume(
    array: np.ndarray, affine: np.ndarray, factor: float, *, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample to ``round(shape / factor)`` voxels over the same field of view.

    Parameters
    ----------
    array : (X, Y, Z) ndarray
    affine : (4, 4) ndarray
    factor : float
        Downsampling factor (> 0, may be non-integer); 1 returns a copy.
    order : int
        Spline order: 3 (cubic B-spline) for images, 0 (nearest) for labels.

    Returns
    -------
    small : (round(X/f), round(Y/f), round(Z/f)) ndarray, dtype of ``array``
    small_affine : (4, 4) ndarray
        Voxel size multiplied by ``shape / new_shape`` (= ``factor`` when the
        shape is divisible); the field of view (voxel edges) is unchanged.
    """
    shape = np.asarray(array.shape)
    new_shape = np.maximum(np.rint(shape / factor).astype(int), 1)
    if np.array_equal(new_shape, shape):
        return array.copy(), affine.copy()
    small = ndimage.zoom(
        array, new_shape / shape, order=order, mode="grid-constant", cval=0.0, grid_mode=True, prefilter=order > 1
    )
    # scipy's grid_mode maps output voxel j to input coordinate (j + 0.5) * step - 0.5
    step = shape / new_shape
    small_affine = affine @ nib.affines.from_matvec(np.diag(step), (step - 1.0) / 2.0)
    return small.astype(array.dtype, copy=False), small_affine


def remove_axial_slices(array: np.ndarray, affine: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop ``count`` slices at both ends of axis 2 (superior-inferior in RAS).

    Parameters
    ----------
    array : (X, Y, Z) ndarray
    affine : (4, 4) ndarray
    count : int
        Slices removed at the bottom and at the top; ``Z - 2 * count`` must be > 0.

    Returns
    -------
    (X, Y, Z - 2 * count) ndarray and its affine.
    """
    if count == 0:
        return array, affine
    if not 0 < 2 * count < array.shape[2]:
        raise ValueError(f"slice_crop={count} leaves no slice of {array.shape[2]}")
    return array[:, :, count:-count], affine @ nib.affines.from_matvec(np.eye(3), (0, 0, count))
