"""Analyses beyond the evaluation protocol: domain shift / intensity alignment (P8.3 §4.5.2)."""

from .domain_shift import contrast_levels, contrast_sweep, entropy, histogram_shift, intensity_histogram

__all__ = ["contrast_levels", "contrast_sweep", "entropy", "histogram_shift", "intensity_histogram"]
