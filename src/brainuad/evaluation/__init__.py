"""Evaluation protocol of the thesis (Behrendt 2026, §2.2-2.4): post-processing of anomaly maps,
threshold selection and per-subject metrics, as plain numpy/scipy/scikit-image/scikit-learn
functions on volumes of shape (D, H, W) (D = axial slices)."""

from .metrics import auprc, dice, l1_ratio, pooled_auprc, reconstruction_metrics, segmentation_metrics
from .postprocess import binarize, erode_mask, postprocess, remove_small_components
from .threshold import (
    PROTOCOLS,
    exhaustive_threshold_search,
    greedy_threshold_search,
    healthy_fpr_threshold,
    pooled_dice,
    search_threshold,
)

__all__ = [
    "PROTOCOLS",
    "auprc",
    "binarize",
    "dice",
    "erode_mask",
    "exhaustive_threshold_search",
    "greedy_threshold_search",
    "healthy_fpr_threshold",
    "l1_ratio",
    "pooled_auprc",
    "pooled_dice",
    "postprocess",
    "reconstruction_metrics",
    "remove_small_components",
    "search_threshold",
    "segmentation_metrics",
]
