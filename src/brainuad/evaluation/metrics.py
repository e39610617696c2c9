"""Per-subject metrics of the thesis protocol (Behrendt 2026, §2.2-2.4).

Segmentation metrics score a post-processed anomaly map (see
:func:`brainuad.evaluation.postprocess.postprocess`) against a lesion segmentation;
reconstruction metrics score a reconstruction against its input.

Conventions
-----------
Volumes are arrays (D, H, W), D = axial slices. Masks and segmentations are bool or integer
(non-zero = inside). "Brain voxels" are the voxels of the brain mask as given (not eroded).

NaN / empty cases
-----------------
* :func:`dice` of two empty sets returns ``empty`` (default NaN: undefined).
* :func:`segmentation_metrics`: for a subject without any lesion voxel, ``dice``,
  ``precision``, ``recall`` and ``auprc`` are NaN (lesion-detection scores are undefined
  there; average per-subject tables with ``np.nanmean``, as the public code does). With
  lesions but nothing predicted, precision is 0 (scikit-learn's ``zero_division=0``).
* :func:`l1_ratio`: a mean over an empty region is NaN, and so is the ratio then.
* :func:`reconstruction_metrics`: identical images give ``psnr = inf``.

Import cost
-----------
Every evaluate job is a fresh process, so this module imports only numpy and scikit-image's SSIM
(scikit-image loads its submodules lazily). Average precision and PSNR are the textbook formulas in
numpy (:func:`average_precision`, :func:`psnr`): ``sklearn.metrics`` and ``skimage.metrics.simple_metrics``
would pull scipy.stats and scikit-learn into every job (``benchmarks/bench_startup.py``); the tests check
both against scikit-learn / scikit-image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from skimage.metrics import structural_similarity

from .postprocess import as_bool, binarize

__all__ = [
    "dice",
    "segmentation_metrics",
    "auprc",
    "pooled_auprc",
    "l1_ratio",
    "reconstruction_metrics",
    "average_precision",
    "psnr",
    "roc_auc",
    "pooled_auroc",
]


def average_precision(labels, scores) -> float:
    """Average precision of binary labels under scores (``sklearn.metrics.average_precision_score``).

    AP = sum_k (R_k - R_{k-1}) P_k over the distinct score values taken as thresholds in decreasing
    order (R_0 = 0): the step-wise area under the precision-recall curve, no interpolation.

    Parameters
    ----------
    labels : ndarray, (N,)
        Non-zero = positive.
    scores : ndarray, (N,)
        Higher = more likely positive; ties form one threshold.

    Returns
    -------
    float
        NaN when there is no positive.
    """
    y = np.asarray(labels).ravel() != 0
    s = np.asarray(scores).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if not y.any():
        return float("nan")
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each distinct score
    tps = np.cumsum(y, dtype=np.float64)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve of binary labels under scores (``sklearn.metrics.roc_auc_score``).

    The Mann-Whitney form: AUROC = (R+ - n+ (n+ + 1) / 2) / (n+ n-), R+ = the sum of the positives' ranks
    among all scores, tied scores sharing their average rank (a tie counts one half, as the trapezoids
    of the ROC curve do).

    Parameters
    ----------
    labels : ndarray, (N,)
        Non-zero = positive.
    scores : ndarray, (N,)
        Higher = more likely positive.

    Returns
    -------
    float
        NaN when there is no positive or no negative.
    """
    y = np.asarray(labels).ravel() != 0
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]  # first index of each distinct score
    ends = np.r_[starts[1:], s.size]
    avg_rank = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _pooled_voxels(maps, segs, masks) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-volume (scores, labels) of the voxels inside each mask (every voxel without masks), shapes checked."""
    if len(maps) != len(segs) or (masks is not None and len(masks) != len(maps)):
        raise ValueError("maps, segs (and masks) must have the same length")
    scores, labels = [], []
    for i, (a, s) in enumerate(zip(maps, segs)):
        m = None if masks is None else masks[i]
        _check_shapes(amap=a, seg=s, **({} if m is None else {"mask": m}))
        a, s = np.asarray(a), as_bool(s)
        if m is None:
            scores.append(a.ravel())
            labels.append(s.ravel())
        else:
            m = as_bool(m)
            scores.append(a[m])
            labels.append(s[m])
    return scores, labels


def pooled_auroc(maps: Sequence, segs: Sequence, masks: Sequence | None = None) -> float:
    """AUROC over the brain voxels of all subjects taken together (as :func:`pooled_auprc`).

    Parameters
    ----------
    maps, segs : sequences of ndarray, each (D, H, W)
        Post-processed (non-binarised) anomaly maps and lesion labels.
    masks : sequence of ndarray, optional
        Brain masks; None uses all voxels.

    Returns
    -------
    float
        :func:`roc_auc`; NaN without lesion voxels or without healthy voxels.
    """
    scores, labels = _pooled_voxels(maps, segs, masks)
    if not labels:
        return float("nan")
    return roc_auc(np.concatenate(labels), np.concatenate(scores))


def psnr(image_true, image_test, data_range: float) -> float:
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE) in dB, in float64
    (``skimage.metrics.peak_signal_noise_ratio``); ``inf`` for identical inputs."""
    err = np.mean((np.asarray(image_true, np.float64) - np.asarray(image_test, np.float64)) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(data_range ** 2 / err))


def _check_shapes(**arrays) -> None:
    shapes = {k: np.shape(v) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("shapes differ: " + ", ".join(f"{k} {s}" for k, s in shapes.items()))


def dice(pred, target, *, empty: float = np.nan) -> float:
    """Dice coefficient 2|X ∩ Y| / (|X| + |Y|) of two binary arrays.

    Parameters
    ----------
    pred, target : ndarray, same shape
        Binary arrays (non-zero = foreground).
    empty : float, default NaN
        Returned when both are empty (0/0). Pass 1.0 for the "two empty sets agree" convention.

    Returns
    -------
    float
        In [0, 1]; 0 when exactly one of the two is empty.
    """
    _check_shapes(pred=pred, target=target)
    p, t = as_bool(pred), as_bool(target)
    denom = np.count_nonzero(p) + np.count_nonzero(t)
    if denom == 0:
        return float(empty)
    return 2.0 * np.count_nonzero(p & t) / denom


def auprc(amap, seg, mask=None) -> float:
    """Area under the precision-recall curve (average precision) over the brain voxels.

    Parameters
    ----------
    amap : ndarray, (D, H, W)
        Post-processed, non-binarised anomaly map (scores).
    seg : ndarray, (D, H, W)
        Lesion segmentation (labels).
    mask : ndarray, (D, H, W), optional
        Brain mask; None uses all voxels.

    Returns
    -------
    float
        :func:`average_precision` (as ``sklearn.metrics.average_precision_score``); NaN when no
        lesion voxel lies in the mask.
    """
    return pooled_auprc([amap], [seg], None if mask is None else [mask])


def pooled_auprc(maps: Sequence, segs: Sequence, masks: Sequence | None = None) -> float:
    """Average precision over the brain voxels of all subjects taken together.

    Unlike the mean of per-subject AUPRCs, every voxel weighs the same, so subjects with large
    brains or many lesion voxels weigh more.

    Parameters
    ----------
    maps, segs : sequences of ndarray, each (D, H, W)
        Post-processed (non-binarised) anomaly maps and lesion segmentations, one per subject.
    masks : sequence of ndarray, optional
        Brain masks; None uses all voxels.

    Returns
    -------
    float
        NaN when no lesion voxel lies in any mask.
    """
    scores, labels = _pooled_voxels(maps, segs, masks)
    y = np.concatenate(labels) if labels else np.zeros(0, bool)
    if not y.any():
        return float("nan")
    return average_precision(y, np.concatenate(scores))


AUPRC_REGIONS = ("brain", "volume")
"""Voxels the AUPRC is computed over (:func:`segmentation_metrics`)."""


def segmentation_metrics(amap_pp, seg, mask, threshold: float, *, min_component: int | None = 7,
                         connectivity: int = 3, component_rule: str = "fewer_than",
                         auprc_region: str = "brain") -> dict:
    """One row of the per-subject segmentation table.

    Parameters
    ----------
    amap_pp : ndarray, (D, H, W)
        Post-processed anomaly map (median filter + eroded mask already applied).
    seg : ndarray, (D, H, W)
        Lesion segmentation.
    mask : ndarray, (D, H, W)
        Brain mask (for FPR and AUPRC).
    threshold : float
        Binarisation threshold (``amap_pp > threshold``).
    min_component : int or None, default 7
        Connected components with fewer voxels are removed before scoring; 0/None keeps all.
    connectivity : int, default 3
        Component connectivity (26-connectivity in 3D).
    component_rule : {"fewer_than", "filled_at_most"}, default "fewer_than"
        See :func:`brainuad.evaluation.postprocess.remove_small_components`.
    auprc_region : {"brain", "volume"}, default "brain"
        AUPRC over the brain-mask voxels or over every voxel of the volume (the author's code).

    Returns
    -------
    dict
        ``dice``, ``precision``, ``recall`` (= TPR), computed over the whole volume;
        ``fpr`` = false positives inside the brain mask / healthy brain voxels (brain mask minus
        lesion; NaN if there are none); ``auprc`` over ``auprc_region`` on the non-binarised
        map (:func:`auprc`); counts ``tp``, ``fp``, ``fn``, ``lesion_voxels`` (all lesion voxels)
        and ``predicted_voxels``, so pooled scores can be computed from the table.
        dice/precision/recall/auprc are NaN for a subject without lesion voxels.
    """
    _check_shapes(amap_pp=amap_pp, seg=seg, mask=mask)
    if auprc_region not in AUPRC_REGIONS:
        raise ValueError(f"auprc_region must be one of {AUPRC_REGIONS}, got {auprc_region!r}")
    s, m = as_bool(seg), as_bool(mask)
    pred = binarize(amap_pp, threshold, min_component=min_component, connectivity=connectivity,
                    component_rule=component_rule)
    tp = int(np.count_nonzero(pred & s))
    n_pred = int(np.count_nonzero(pred))
    n_les = int(np.count_nonzero(s))
    healthy = m & ~s
    n_healthy = int(np.count_nonzero(healthy))
    fp_brain = int(np.count_nonzero(pred & healthy))
    nan = float("nan")
    if n_les:
        d = 2.0 * tp / (n_pred + n_les)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_les
    else:
        d = precision = recall = nan
    return {
        "dice": d,
        "precision": precision,
        "recall": recall,
        "fpr": fp_brain / n_healthy if n_healthy else nan,
        "auprc": auprc(amap_pp, s, m if auprc_region == "brain" else None) if n_les else nan,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_les - tp,
        "lesion_voxels": n_les,
        "predicted_voxels": n_pred,
    }


def l1_ratio(image, recon, seg, mask) -> dict:
    """Mean absolute reconstruction error in lesions versus healthy brain.

    Parameters
    ----------
    image, recon : ndarray, (D, H, W)
        Input and reconstruction.
    seg : ndarray, (D, H, W)
        Lesion segmentation; lesion region = lesion voxels inside the brain mask.
    mask : ndarray, (D, H, W)
        Brain mask; healthy region = brain-mask voxels not in the lesion.

    Returns
    -------
    dict
        ``l1_lesion`` and ``l1_healthy`` (mean |image - recon| over each region, NaN if the
        region is empty) and ``l1_ratio = l1_lesion / l1_healthy`` (higher = lesions stand out
        more; NaN if either mean is NaN, inf if only the healthy error is 0).
    """
    _check_shapes(image=image, recon=recon, seg=seg, mask=mask)
    err = np.abs(np.asarray(image, dtype=np.float64) - np.asarray(recon, dtype=np.float64))
    s, m = as_bool(seg), as_bool(mask)
    les, hea = s & m, m & ~s
    nan = float("nan")
    l1_les = float(err[les].mean()) if les.any() else nan
    l1_hea = float(err[hea].mean()) if hea.any() else nan
    if np.isnan(l1_les) or np.isnan(l1_hea):
        ratio = nan
    elif l1_hea == 0:
        ratio = float("inf") if l1_les > 0 else nan
    else:
        ratio = l1_les / l1_hea
    return {"l1_lesion": l1_les, "l1_healthy": l1_hea, "l1_ratio": ratio}


def reconstruction_metrics(image, recon, mask, *, data_range: float = 1.0,
                           psnr_region: str = "mask", win_size: int = 7) -> dict:
    """Reconstruction quality of one volume.

    Parameters
    ----------
    image, recon : ndarray, (D, H, W)
        Input and reconstruction, intensities scaled to [0, 1].
    mask : ndarray, (D, H, W)
        Brain mask.
    data_range : float, default 1.0
        Intensity range passed to SSIM and PSNR (the protocol uses 1).
    psnr_region : {"mask", "volume"}, default "mask"
        PSNR over the brain-mask voxels (default: the zero background, identical in input and
        reconstruction, would otherwise inflate it) or over the whole volume.
    win_size : int, default 7
        SSIM window edge (odd, at most the smallest volume edge).

    Returns
    -------
    dict
        ``ssim``: ``skimage.metrics.structural_similarity`` on the whole 3D volume;
        ``psnr``: :func:`psnr` (as ``skimage.metrics.peak_signal_noise_ratio``) in dB (``inf`` when the region
        is reconstructed exactly; NaN for an empty mask);
        ``l1``: mean |image - recon| inside the brain mask (NaN for an empty mask).
    """
    _check_shapes(image=image, recon=recon, mask=mask)
    x = np.asarray(image, dtype=np.float64)
    y = np.asarray(recon, dtype=np.float64)
    m = as_bool(mask)
    ssim = float(structural_similarity(x, y, data_range=data_range, win_size=win_size))
    if psnr_region == "mask":
        xr, yr = x[m], y[m]
    elif psnr_region == "volume":
        xr, yr = x.ravel(), y.ravel()
    else:
        raise ValueError(f"psnr_region must be 'mask' or 'volume', got {psnr_region!r}")
    if xr.size == 0:
        psnr_db = float("nan")
    elif np.array_equal(xr, yr):
        psnr_db = float("inf")  # skimage would divide by zero (and warn)
    else:
        psnr_db = psnr(xr, yr, data_range)
    l1 = float(np.abs(x[m] - y[m]).mean()) if m.any() else float("nan")
    return {"ssim": ssim, "psnr": psnr_db, "l1": l1}
