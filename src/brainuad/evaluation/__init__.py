"""Evaluation protocol of the thesis (Behrendt 2026, §2.2-2.4): post-processing of anomaly maps,
threshold selection and per-subject metrics, as plain numpy/scipy/scikit-image/scikit-learn
functions on volumes of shape (D, H, W) (D = axial slices).

The names below are exported lazily (:mod:`brainuad.lazy`): importing the package imports none of its
submodules, and no torch at all (only :mod:`.lpips` needs torch, imported when LPIPS is configured).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "metrics": ["auprc", "dice", "l1_ratio", "pooled_auprc", "reconstruction_metrics", "segmentation_metrics"],
    "postprocess": ["binarize", "erode_mask", "postprocess", "remove_small_components"],
    "threshold": ["PROTOCOLS", "exhaustive_threshold_search", "greedy_threshold_search", "healthy_fpr_threshold",
                  "pooled_dice", "search_threshold"],
})
