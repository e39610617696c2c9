"""Evaluation protocol of the thesis (Behrendt 2026, §2.2-2.4): post-processing of anomaly maps,
threshold selection and per-subject metrics, as plain numpy/scipy/scikit-image/scikit-learn
functions on volumes of shape (D, H, W) (D = axial slices)."""

#: public name -> submodule; imported on first use, so that the torch-free planning code (brainuad.study, which
#: reads brainuad.evaluation.stats and .claims at parse time) does not load scikit-learn / scikit-image
_LAZY = {
    **dict.fromkeys(["auprc", "dice", "l1_ratio", "pooled_auprc", "reconstruction_metrics", "segmentation_metrics"],
                    "metrics"),
    **dict.fromkeys(["binarize", "erode_mask", "postprocess", "remove_small_components"], "postprocess"),
    **dict.fromkeys(["PROTOCOLS", "exhaustive_threshold_search", "greedy_threshold_search", "healthy_fpr_threshold",
                     "pooled_dice", "search_threshold"], "threshold"),
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module == "metrics":
        from . import metrics as mod
    elif module == "postprocess":
        from . import postprocess as mod
    elif module == "threshold":
        from . import threshold as mod
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(mod, name)


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
