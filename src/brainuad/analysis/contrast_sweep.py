"""The domain-shift experiment (P8.3) run on a model: reconstruct healthy volumes at every simulated contrast
level and measure the intensity shift (:mod:`brainuad.analysis.domain_shift` holds the torch-free measures)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..inference import run_model
from .domain_shift import CONTRAST_LEVELS, contrast_levels, histogram_shift


def contrast_sweep(model, images, masks, levels: Sequence[float] = CONTRAST_LEVELS, bins: int = 500,
                   **run_kwargs) -> tuple[list[dict], dict]:
    """Reconstruct every simulated contrast of healthy volumes and measure the intensity shift.

    Parameters
    ----------
    model : reconstruction model in eval mode (see :func:`brainuad.inference.run_model`)
    images : ndarray (N, D, H, W) in [0, 1]
    masks : bool ndarray (N, D, H, W)
        Brain masks.
    levels : sequence of float
        Contrast levels cl (:func:`contrast_levels`).
    bins : int
        Histogram bins (:func:`histogram_shift`).
    **run_kwargs
        ``noise_level``, ``batch_size``, ``seed``, ``device`` of :func:`brainuad.inference.run_model`
        (one reconstruction per volume).

    Returns
    -------
    rows : list of dict
        Per level: ``contrast_level``, ``entropy_input``, ``entropy_recon``, ``entropy_difference``,
        ``kld_p83``, ``l1_brain`` (mean |recon - input| on brain voxels) and ``n_voxels``.
    hists : dict
        ``input_{cl}`` / ``recon_{cl}`` densities (bins,) and ``bin_edges`` (bins + 1,).
    """
    rows, hists = [], {}
    for cl, x in contrast_levels(images, levels).items():
        rec = run_model(model, x, masks, samples=1, **run_kwargs)[0].astype(np.float32)
        res = histogram_shift(x, np.clip(rec, 0, 1), masks, bins=bins)
        rows.append({"contrast_level": cl, "entropy_input": res["entropy_input"], "entropy_recon": res["entropy_recon"],
                     "entropy_difference": res["entropy_difference"], "kld_p83": res["kld_p83"],
                     "l1_brain": float(np.abs(rec - x)[masks].mean()), "n_voxels": res["n_voxels"]})
        hists[f"input_{cl}"], hists[f"recon_{cl}"] = res["hist_input"], res["hist_recon"]
        hists["bin_edges"] = res["bin_edges"]
    return rows, hists
