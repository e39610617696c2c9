"""Analyses beyond the evaluation protocol: domain shift / intensity alignment (P8.3 §4.5.2).

The measures (:mod:`.domain_shift`) are torch-free, so the report rules can use them;
:func:`brainuad.analysis.contrast_sweep.contrast_sweep` runs the experiment on a model (torch).
Exports are lazy (:mod:`brainuad.lazy`).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "domain_shift": ["contrast_levels", "entropy", "histogram_shift", "intensity_histogram"],
})
