"""Lesion-wise detection: ground-truth lesions as connected components, detected or missed by a binarised map.

Rule
----
* A **lesion** is a connected component of the lesion label (26-connectivity in 3D by default,
  ``connectivity=3`` as in :func:`skimage.measure.label`), after ignored voxels were removed.
* A lesion is **detected** when the binarised map covers at least a fraction ``overlap`` of its voxels
  and at least one voxel (``overlap = 0``: any overlap counts, the usual lesion-wise rule).
* A **false-positive component** is a connected component of the binarised map that touches no
  lesion voxel at all (a predicted component overlapping a lesion, even one below ``overlap``, is not
  counted as a false positive).
* Lesions are stratified by their voxel count, false-positive components by theirs, with the same
  strata (:func:`normalise_strata`): voxel counts at the resolution of the evaluated (pre-processed)
  volumes.

Per subject: ``lesion_sensitivity`` = detected / lesions (NaN without lesions), ``fp_components`` =
false-positive components in the volume, and both per stratum (``lesion_sensitivity_<name>``,
``fp_components_<name>``) plus the counts behind them (``n_lesions``, ``n_detected`` and per stratum).
"""

from __future__ import annotations

import math

import numpy as np

#: default strata: upper voxel-count bounds (exclusive; None = no bound), at the evaluated resolution
DEFAULT_STRATA = {"small": 100, "medium": 1000, "large": None}


def normalise_strata(strata: dict | None) -> list[tuple[str, float]]:
    """``{name: upper bound or None}`` -> ``[(name, upper)]`` sorted by bound (None = infinity).

    A component of ``n`` voxels falls in the first stratum with ``n < upper``; the last stratum must
    be unbounded (None) so that every component falls in one.

    Raises
    ------
    ValueError
        Duplicate bounds, a non-positive bound, or no unbounded stratum.
    """
    strata = DEFAULT_STRATA if strata is None else strata
    if not strata:
        raise ValueError("lesion strata: at least one stratum is needed")
    items = sorted(((str(k), math.inf if v is None else float(v)) for k, v in strata.items()), key=lambda kv: kv[1])
    bounds = [b for _, b in items]
    if len(set(bounds)) != len(bounds):
        raise ValueError(f"lesion strata: duplicate upper bounds in {strata}")
    if bounds[0] <= 0:
        raise ValueError(f"lesion strata: bounds must be positive voxel counts, got {strata}")
    if bounds[-1] != math.inf:
        raise ValueError(f"lesion strata: the largest stratum needs the bound null (no upper limit), got {strata}")
    return items


def stratum_of(size: int, strata: list[tuple[str, float]]) -> str:
    """Name of the stratum of a component with ``size`` voxels (``strata`` from :func:`normalise_strata`)."""
    for name, upper in strata:
        if size < upper:
            return name
    return strata[-1][0]


def lesion_detection(pred, seg, *, overlap: float = 0.0, strata: dict | None = None,
                     connectivity: int = 3) -> dict:
    """Lesion-wise detection counts of one subject.

    Parameters
    ----------
    pred : ndarray, (D, H, W)
        Binarised anomaly map (non-zero = predicted anomalous), e.g. after the component filter.
    seg : ndarray, (D, H, W)
        Lesion label (non-zero = lesion).
    overlap : float, default 0
        Fraction of a lesion's voxels the prediction must cover for the lesion to count as detected
        (at least one voxel is always needed), in [0, 1].
    strata : dict, optional
        ``{name: upper voxel bound or None}`` (:func:`normalise_strata`); :data:`DEFAULT_STRATA` when None.
    connectivity : int, default 3
        Component connectivity (:func:`skimage.measure.label`; 3 = 26-neighbourhood in 3D).

    Returns
    -------
    dict
        ``n_lesions``, ``n_detected``, ``lesion_sensitivity`` (NaN without lesions), ``fp_components``, and
        for every stratum ``s``: ``n_lesions_s``, ``n_detected_s``, ``lesion_sensitivity_s`` (NaN without
        lesions of that size) and ``fp_components_s``.
    """
    from skimage.measure import label  # here: Study imports this module at workflow parse time

    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"lesion overlap must be in [0, 1], got {overlap}")
    p, s = np.asarray(pred) != 0, np.asarray(seg) != 0
    if p.shape != s.shape:
        raise ValueError(f"prediction {p.shape} and lesion label {s.shape} differ in shape")
    items = normalise_strata(strata)
    names = [n for n, _ in items]
    out = {f"n_lesions_{n}": 0 for n in names} | {f"n_detected_{n}": 0 for n in names}
    out |= {f"fp_components_{n}": 0 for n in names}

    lesions = label(s, connectivity=connectivity)
    sizes = np.bincount(lesions.ravel())
    hits = np.bincount(lesions[p].ravel(), minlength=sizes.size)
    for k in range(1, sizes.size):
        name = stratum_of(int(sizes[k]), items)
        out[f"n_lesions_{name}"] += 1
        if hits[k] > 0 and hits[k] >= overlap * sizes[k]:
            out[f"n_detected_{name}"] += 1

    comps = label(p, connectivity=connectivity)
    csizes = np.bincount(comps.ravel())
    touches = np.bincount(comps[s].ravel(), minlength=csizes.size)
    for k in range(1, csizes.size):
        if touches[k] == 0:
            out[f"fp_components_{stratum_of(int(csizes[k]), items)}"] += 1

    out["n_lesions"] = sum(out[f"n_lesions_{n}"] for n in names)
    out["n_detected"] = sum(out[f"n_detected_{n}"] for n in names)
    out["fp_components"] = sum(out[f"fp_components_{n}"] for n in names)
    nan = float("nan")
    out["lesion_sensitivity"] = out["n_detected"] / out["n_lesions"] if out["n_lesions"] else nan
    for n in names:
        les = out[f"n_lesions_{n}"]
        out[f"lesion_sensitivity_{n}"] = out[f"n_detected_{n}"] / les if les else nan
    return out


def pooled_lesion_sensitivity(rows: list[dict], stratum: str | None = None) -> float:
    """Detected lesions / lesions over several subjects' :func:`lesion_detection` rows (NaN without lesions)."""
    suffix = f"_{stratum}" if stratum else ""
    les = sum(r[f"n_lesions{suffix}"] for r in rows)
    return sum(r[f"n_detected{suffix}"] for r in rows) / les if les else float("nan")
