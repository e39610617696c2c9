"""Lesion labels as the manifest describes them.

A raw label keeps its values; the manifest columns ``seg_lesion_values`` / ``seg_ignore_values``
(written by the data sources, :mod:`brainuad.data.sources`) say how to read it. Lesion = voxels
whose value is in ``seg_lesion_values`` (every value > 0 when empty: BraTS 1/2/4 are fused into one
tumour mask, which is also what :func:`brainuad.data.nifti.load_label` does). Ignore = voxels whose
value is in ``seg_ignore_values``: they are neither lesion nor healthy and are removed from every
voxel-wise metric (WMH ``other_pathology: exclude``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainuad.data.nifti import check_finite, read_volume

__all__ = ["label_arrays"]


def _parse_values(values: str | Sequence[int]) -> tuple[int, ...]:
    """Label values of a manifest column (``"1"``, ``"1,2"``, ``"1;2"``, ``""``) or a sequence as ints."""
    if isinstance(values, str):
        return tuple(int(v) for v in values.replace(";", ",").split(",") if v.strip())
    return tuple(int(v) for v in values)


def label_arrays(path: str | Path, lesion_values: str | Sequence[int] = "", ignore_values: str | Sequence[int] = ""
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a raw label read-only and split it as the manifest's value columns say.

    Parameters
    ----------
    path : path
        Raw label file.
    lesion_values, ignore_values : str or sequence of int
        The ``seg_lesion_values`` / ``seg_ignore_values`` of the row (``"1"``, ``"1,2"``, ``""``).

    Returns
    -------
    lesion : (X, Y, Z) uint8
        1 where the value is in ``lesion_values`` (every value > 0 when empty) and not in
        ``ignore_values``.
    ignore : (X, Y, Z) uint8 or None
        1 where the value is in ``ignore_values``; None when there are none.
    """
    data, _ = read_volume(Path(path))
    check_finite(data, Path(path))
    lesion_set, ignore_set = _parse_values(lesion_values), _parse_values(ignore_values)
    lesion = np.isin(data, lesion_set) if lesion_set else data > 0
    if ignore_set:
        lesion &= ~np.isin(data, ignore_set)
    ignore = np.isin(data, ignore_set).astype(np.uint8) if ignore_set else None
    return lesion.astype(np.uint8), ignore
