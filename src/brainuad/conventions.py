"""Conventions of the evaluation protocol where the thesis text and the author's code differ, and the two
named presets that set all of them at once (torch-free: read at parse time by :mod:`brainuad.study`).

Every switch has two values; the config section ``conventions`` picks a preset and may override single
switches (config/README.md, "conventions")::

    conventions: {preset: author_code}                      # the code that produced the published numbers
    conventions: {preset: thesis_text, auprc_region: volume} # the thesis text, one switch changed

Switches
--------
``ssim_covariance`` : ``population`` | ``sample``
    Local (co)variances of every SSIM (``ssim``, ``ssim_ens``, ``mean_ssim`` and the ``1 - SSIM`` factor of
    ``mhd_diag`` / ``mhd_full``): the Gaussian-weighted moments of Wang et al. 2004 (eq. 14-16; weights sum to
    one, no ``N / (N - 1)``) or scikit-image's sample covariance (scaled by ``N / (N - 1)``, ``N`` = window
    voxels). :func:`brainuad.scoring.ssim.ssim_maps`.
``ssim_padding`` : ``mirror`` | ``reflect``
    Boundary of the SSIM window: ``mirror`` = torch ``F.pad(mode="reflect")`` (``d c b | a b c d | c b a``, the
    edge voxel is not repeated; scipy ``mode="mirror"``), ``reflect`` = scipy / scikit-image ``reflect``
    (``c b a | a b c d | d c b``).
``postprocess_order`` : ``median_first`` | ``mask_first``
    3D median filter, then multiplication by the eroded brain mask (thesis §3.2), or the eroded mask first and
    the median filter afterwards (the code; the map can then be non-zero just outside the eroded mask).
    :func:`brainuad.evaluation.postprocess.postprocess`.
``component_rule`` : ``fewer_than`` | ``filled_at_most``
    After binarisation, remove connected components with fewer than ``evaluation.min_component`` voxels
    (thesis) or those whose hole-filled size is at most ``min_component`` voxels (the code's
    ``regionprops(...).filled_area <= 7``). :func:`brainuad.evaluation.postprocess.remove_small_components`.
``auprc_region`` : ``brain`` | ``volume``
    AUPRC (per subject and pooled) over the brain-mask voxels or over every voxel of the volume (the code).
    :func:`brainuad.evaluation.metrics.pooled_auprc`.
``threshold_ties`` : ``first`` | ``last``
    Greedy threshold search: among equally good candidates keep the earliest or the latest (the code's
    ``>=``). :func:`brainuad.evaluation.threshold.greedy_threshold_search`.
"""

from __future__ import annotations

#: every switch and its two values
SWITCHES: dict[str, tuple[str, str]] = {
    "ssim_covariance": ("population", "sample"),
    "ssim_padding": ("mirror", "reflect"),
    "postprocess_order": ("median_first", "mask_first"),
    "component_rule": ("fewer_than", "filled_at_most"),
    "auprc_region": ("brain", "volume"),
    "threshold_ties": ("first", "last"),
}

#: the named presets (config ``conventions.preset``)
PRESETS: dict[str, dict[str, str]] = {
    # every convention as the author's public code that produced the published numbers (peers.md §1.0-§1.4)
    "author_code": {
        "ssim_covariance": "population",   # vendored torchmetrics SSIM: plain Gaussian-weighted moments
        "ssim_padding": "mirror",          # torch F.pad(mode="reflect")
        "postprocess_order": "mask_first",  # eroded mask, then median filter (utils_eval._test_step)
        "component_rule": "filled_at_most",  # regionprops filled_area <= 7 removed
        "auprc_region": "volume",           # average_precision_score on the flattened volume
        "threshold_ties": "last",           # find_best_val: >= keeps the later candidate
    },
    # as the thesis text states it; where the text is silent, brainuad's choice before the presets existed
    "thesis_text": {
        "ssim_covariance": "population",   # Wang et al. 2004 Gaussian-window moments (cited by the thesis)
        "ssim_padding": "reflect",          # not stated; scipy / scikit-image reflect
        "postprocess_order": "median_first",  # §3.2: median filter, then eroded brain mask
        "component_rule": "fewer_than",     # §3.2: "areas with fewer than seven voxels" removed
        "auprc_region": "brain",            # not stated; brain-mask voxels
        "threshold_ties": "first",          # not stated; the earliest best candidate
    },
}

DEFAULT_PRESET = "thesis_text"

#: switches that change the anomaly maps (the score rule), and those that change the evaluation
SCORING_SWITCHES = ("ssim_covariance", "ssim_padding")
EVALUATION_SWITCHES = ("postprocess_order", "component_rule", "auprc_region", "threshold_ties")
#: the evaluation switches a healthy dataset's evaluation uses (post-processed maps -> FPR thresholds)
HEALTHY_SWITCHES = ("postprocess_order",)
#: the evaluation switches the qualitative and MHD figures use (post-process and binarise one map)
FIGURE_SWITCHES = ("postprocess_order", "component_rule")

#: keyword names under which each scoring that computes an SSIM takes the two SSIM switches
#: (tests/scoring/test_conventions.py checks them against the registered functions' signatures)
SSIM_KWARGS: dict[str, dict[str, str]] = {
    "ssim": {"ssim_covariance": "covariance", "ssim_padding": "padding"},
    "mean_ssim": {"ssim_covariance": "covariance", "ssim_padding": "padding"},
    "ssim_ens": {"ssim_covariance": "covariance", "ssim_padding": "padding"},
    "mhd_diag": {"ssim_covariance": "ssim_covariance", "ssim_padding": "ssim_padding"},
    "mhd_full": {"ssim_covariance": "ssim_covariance", "ssim_padding": "ssim_padding"},
    "sadm": {"ssim_covariance": "covariance", "ssim_padding": "padding"},
}


def resolve(section: dict | None) -> dict[str, str]:
    """The conventions in force: the preset's values with the section's own switches on top.

    Parameters
    ----------
    section : dict or None
        The config section ``conventions`` (``preset`` and optional switches); None = the default preset.

    Returns
    -------
    dict
        ``preset`` and every key of :data:`SWITCHES` with its value.

    Raises
    ------
    ValueError
        ``config error: conventions...`` for an unknown preset, switch or value.
    """
    section = dict(section or {})
    preset = section.pop("preset", DEFAULT_PRESET)
    if preset not in PRESETS:
        raise ValueError(f"config error: conventions.preset: {preset!r} is not one of {', '.join(PRESETS)}")
    out = {"preset": preset, **PRESETS[preset]}
    for key, value in section.items():
        if key not in SWITCHES:
            raise ValueError(f"config error: conventions.{key}: unknown switch; allowed: preset, {', '.join(SWITCHES)}")
        if value not in SWITCHES[key]:
            raise ValueError(f"config error: conventions.{key}: {value!r} is not one of {', '.join(SWITCHES[key])}")
        out[key] = value
    return out


def overridden(section: dict | None) -> set[str]:
    """Switches the config sets itself (rather than taking them from the preset)."""
    return {k for k in (section or {}) if k != "preset"}


def scoring_kwargs(name: str, conventions: dict) -> dict[str, str]:
    """The SSIM switches as keyword arguments of scoring ``name`` ({} for a scoring without an SSIM).

    ``mhd_diag`` / ``mhd_full`` with ``combine_ssim: false`` compute no SSIM: pass their entry's
    ``combine_ssim`` through :func:`scoring_uses_ssim` first.
    """
    return {kw: conventions[key] for key, kw in SSIM_KWARGS.get(name, {}).items()}


def scoring_uses_ssim(entry: dict) -> bool:
    """Whether a configured scoring (``name`` and its parameters) computes an SSIM."""
    return entry["name"] in SSIM_KWARGS and entry.get("combine_ssim", True) is not False


def subset(conventions: dict, keys) -> dict[str, str]:
    """``{key: conventions[key]}`` for the given switches."""
    return {k: conventions[k] for k in keys}
