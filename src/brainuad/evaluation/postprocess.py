"""Post-processing of 3D anomaly maps (thesis protocol, Behrendt 2026, §2.2-2.4).

The protocol applies, to every 3D anomaly map and in this order:

1. a 3D median filter (5 x 5 x 5),
2. erosion of the brain mask (3 iterations) and multiplication of the map by the eroded mask,
3. binarisation with a threshold (``amap > threshold``),
4. removal of connected components with fewer than 7 voxels (3D, 26-connectivity).

Steps 1-2 are :func:`postprocess`; steps 3-4 are :func:`binarize`. Thresholds are searched on
maps after steps 1-2 (see :mod:`brainuad.evaluation.threshold`).

Two conventions of the author's public code differ from this text and have switches (config
``conventions``, :mod:`brainuad.conventions`): ``order="mask_first"`` swaps steps 1 and 2, and
``rule="filled_at_most"`` removes the components whose hole-filled size is at most the minimum size.

Conventions
-----------
A volume is an array of shape (D, H, W) with D the axial slices (axis 0). Anomaly maps are
float; brain masks and lesion segmentations are bool or integer (non-zero = inside).
Every step has a keyword; 0 or None disables it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label, regionprops

__all__ = ["as_bool", "postprocess", "binarize", "remove_small_components", "erode_mask", "ORDERS", "COMPONENT_RULES"]

ORDERS = ("median_first", "mask_first")
"""Orders of protocol steps 1-2 (:func:`postprocess`)."""

COMPONENT_RULES = ("fewer_than", "filled_at_most")
"""Small-component rules (:func:`remove_small_components`)."""


def as_bool(a) -> np.ndarray:
    """``a`` as a boolean array (non-zero = True); a boolean array is returned as it is, not copied."""
    a = np.asarray(a)
    return a if a.dtype == bool else a != 0


def erode_mask(mask, iterations: int = 3, *, mode: str = "2d") -> np.ndarray:
    """Erode a brain mask.

    Parameters
    ----------
    mask : ndarray, (D, H, W)
        Brain mask, non-zero = brain.
    iterations : int, default 3
        Number of erosion iterations; 0 or None returns the mask unchanged (as bool).
    mode : {"2d", "3d"}, default "2d"
        ``"2d"``: each axial slice (axis 0) is eroded on its own with the 4-connected cross
        (``generate_binary_structure(2, 1)``), as the author's public code does; the slices do
        not erode each other. ``"3d"``: 3D erosion with the 6-connected cross
        (``generate_binary_structure(3, 1)``), which also eats the top and bottom slices.

    Returns
    -------
    ndarray of bool, (D, H, W)
        Voxels outside the array count as background (``border_value=0``), so a mask that
        touches the array border is eroded from there too.
    """
    m = as_bool(mask)
    if not iterations:
        return m.copy()
    if m.ndim != 3:
        raise ValueError(f"mask must be a 3D volume (D, H, W), got shape {m.shape}")
    if mode == "2d":
        # a (1, 3, 3) structure acts within each axial slice only
        structure = ndimage.generate_binary_structure(2, 1)[np.newaxis]
    elif mode == "3d":
        structure = ndimage.generate_binary_structure(3, 1)
    else:
        raise ValueError(f"erode mode must be '2d' or '3d', got {mode!r}")
    return ndimage.binary_erosion(m, structure=structure, iterations=int(iterations), border_value=0)


def postprocess(amap, mask=None, *, median: int | None = 5, erode: int | None = 3,
                erode_mode: str = "2d", order: str = "median_first") -> np.ndarray:
    """Protocol steps 1-2: median filter, then multiplication by the eroded brain mask (or the reverse).

    Parameters
    ----------
    amap : ndarray, (D, H, W)
        Anomaly map (float).
    mask : ndarray, (D, H, W), optional
        Brain mask (non-zero = brain). None skips step 2 entirely.
    median : int or None, default 5
        Edge length of the cubic median filter (``scipy.ndimage.median_filter``, boundary mode
        ``"reflect"``); 0 or None skips it.
    erode : int or None, default 3
        Erosion iterations of the mask (see :func:`erode_mask`); 0 or None multiplies the map
        by the un-eroded mask.
    erode_mode : {"2d", "3d"}, default "2d"
        Per-axial-slice 2D erosion (public code) or 3D erosion; see :func:`erode_mask`.
    order : {"median_first", "mask_first"}, default "median_first"
        ``"median_first"``: median filter, then the eroded mask (the thesis text);
        ``"mask_first"``: the eroded mask, then the median filter (the author's code): the median can
        then leave non-zero values just outside the eroded mask (where most of a window is inside).

    Returns
    -------
    ndarray, (D, H, W)
        A new float array (the input is not modified); zero outside the eroded mask for
        ``"median_first"``.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    a = np.asarray(amap)
    if a.ndim != 3:
        raise ValueError(f"anomaly map must be a 3D volume (D, H, W), got shape {a.shape}")
    out = a.astype(np.result_type(a.dtype, np.float32), copy=True)
    eroded = None
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != a.shape:
            raise ValueError(f"mask shape {m.shape} differs from anomaly map shape {a.shape}")
        eroded = erode_mask(m, erode, mode=erode_mode)
    if eroded is not None and order == "mask_first":
        out *= eroded
    if median:
        out = ndimage.median_filter(out, size=int(median))
    if eroded is not None and order == "median_first":
        out *= eroded
    return out


def remove_small_components(binary, min_size: int, connectivity: int = 3, rule: str = "fewer_than") -> np.ndarray:
    """Remove small connected components.

    Parameters
    ----------
    binary : ndarray, (D, H, W) (any dimension works)
        Binary map, non-zero = foreground.
    min_size : int
        The size limit; 0 or None keeps everything.
    connectivity : int, default 3
        Maximum number of orthogonal hops between neighbours, as in
        ``skimage.measure.label``: 1 = 6-connectivity, 3 = 26-connectivity in 3D (diagonally
        corner-touching voxels are joined). Must not exceed ``binary.ndim``.
    rule : {"fewer_than", "filled_at_most"}, default "fewer_than"
        ``"fewer_than"``: components with ``size < min_size`` are removed, ``size >= min_size`` kept
        (the thesis: "fewer than 7 voxels" are removed). ``"filled_at_most"``: components whose
        hole-filled size (``skimage.measure.regionprops(...).area_filled``: holes enclosed in
        ``binary.ndim`` dimensions filled within the component's bounding box) is ``<= min_size`` are
        removed (the author's code: ``filled_area <= 7``); a 7-voxel component goes, and with
        ``min_size`` 26 a 3 x 3 x 3 cube without its centre (26 voxels, filled 27) stays.

    Returns
    -------
    ndarray of bool, same shape as ``binary``
    """
    if rule not in COMPONENT_RULES:
        raise ValueError(f"component rule must be one of {COMPONENT_RULES}, got {rule!r}")
    b = as_bool(binary)
    if not min_size or not b.any():
        return b.copy()
    labels = label(b, connectivity=connectivity)
    sizes = np.bincount(labels.ravel())
    if rule == "fewer_than":
        keep = sizes >= int(min_size)
    else:
        keep = sizes > int(min_size)  # the filled size is at least the size: only these can go
        for prop in regionprops(labels):
            if not keep[prop.label]:
                keep[prop.label] = prop.area_filled > int(min_size)
    keep[0] = False  # background
    return keep[labels]


def binarize(amap, threshold: float, *, min_component: int | None = 7,
             connectivity: int = 3, component_rule: str = "fewer_than") -> np.ndarray:
    """Protocol steps 3-4: threshold the (post-processed) map and drop small components.

    Parameters
    ----------
    amap : ndarray, (D, H, W)
        Post-processed anomaly map (output of :func:`postprocess`).
    threshold : float
        A voxel is anomalous when ``amap > threshold`` (strict, as in the public code: with
        threshold 0 the zeros outside the brain stay negative).
    min_component : int or None, default 7
        Components with fewer voxels are removed (:func:`remove_small_components`);
        0 or None skips the step.
    connectivity : int, default 3
        Component connectivity (3 = 26-connectivity in 3D).
    component_rule : {"fewer_than", "filled_at_most"}, default "fewer_than"
        See :func:`remove_small_components`.

    Returns
    -------
    ndarray of bool, (D, H, W)
    """
    b = np.asarray(amap) > threshold
    if min_component:
        b = remove_small_components(b, min_component, connectivity=connectivity, rule=component_rule)
    return b
