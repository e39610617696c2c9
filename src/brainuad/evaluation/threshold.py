"""Threshold selection for binarising anomaly maps (thesis protocol, Behrendt 2026, §2.3).

All searches take anomaly maps that already went through protocol steps 1-2
(:func:`brainuad.evaluation.postprocess.postprocess`) and use the binarisation rule of
:func:`brainuad.evaluation.postprocess.binarize`: a voxel is anomalous when ``map > t``.

Protocols (:func:`search_threshold`)
------------------------------------
``"greedy"``
    :func:`greedy_threshold_search`: the 10-step interval bisection of Zimmerer et al. on the
    Dice pooled over all voxels of all volumes. This is the thesis protocol.
``"exhaustive"``
    :func:`exhaustive_threshold_search`: the exact maximiser of the pooled Dice over all
    thresholds, by sorting and cumulative sums. A check that the greedy search comes close.
``"healthy_fpr"``
    :func:`healthy_fpr_threshold`: no lesions needed; the threshold at which a given fraction
    of the brain voxels of healthy volumes is flagged.

Every search returns ``(threshold, score)``: the pooled Dice for the first two, the achieved
false-positive rate on the calibration volumes for the third.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .postprocess import binarize

__all__ = [
    "pooled_dice",
    "greedy_threshold_search",
    "exhaustive_threshold_search",
    "healthy_fpr_threshold",
    "search_threshold",
    "PROTOCOLS",
]

PROTOCOLS = ("greedy", "exhaustive", "healthy_fpr")

TIES = ("first", "last")
"""Which of equally good candidates the greedy search keeps (:func:`greedy_threshold_search`)."""


def _pairs(maps: Sequence, others: Sequence, other_name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check the volume lists and return (map, bool array) pairs."""
    if len(maps) != len(others):
        raise ValueError(f"got {len(maps)} maps but {len(others)} {other_name}")
    if len(maps) == 0:
        raise ValueError("no volumes given")
    out = []
    for i, (a, s) in enumerate(zip(maps, others)):
        a, s = np.asarray(a), np.asarray(s)
        if a.shape != s.shape:
            raise ValueError(f"volume {i}: map shape {a.shape} differs from {other_name} shape {s.shape}")
        out.append((a, s if s.dtype == bool else s != 0))
    return out


def _dice_objective(pairs, min_component: int | None, connectivity: int,
                    component_rule: str = "fewer_than") -> Callable[[float], float]:
    """Return ``t -> pooled Dice of (map > t [minus small components]) against the segs``."""
    n_pos = sum(int(np.count_nonzero(s)) for _, s in pairs)
    if n_pos == 0:
        raise ValueError("the segmentations contain no lesion voxel: the pooled Dice is undefined")

    if min_component:
        def objective(t: float) -> float:
            tp = n_pred = 0
            for a, s in pairs:
                b = binarize(a, t, min_component=min_component, connectivity=connectivity,
                             component_rule=component_rule)
                tp += int(np.count_nonzero(b & s))
                n_pred += int(np.count_nonzero(b))
            return 2.0 * tp / (n_pred + n_pos)
    else:
        lesion_scores = [a[s] for a, s in pairs]  # small: only the lesion voxels

        def objective(t: float) -> float:
            n_pred = sum(int(np.count_nonzero(a > t)) for a, _ in pairs)
            tp = sum(int(np.count_nonzero(v > t)) for v in lesion_scores)
            return 2.0 * tp / (n_pred + n_pos)

    return objective


def pooled_dice(maps: Sequence, segs: Sequence, threshold: float, *, min_component: int | None = 0,
                connectivity: int = 3, component_rule: str = "fewer_than") -> float:
    """Dice over all voxels of all volumes at once (the objective of the threshold search).

    Parameters
    ----------
    maps : sequence of ndarray, each (D, H, W)
        Post-processed anomaly maps.
    segs : sequence of ndarray, each like the matching map
        Lesion segmentations; together they must contain at least one lesion voxel.
    threshold : float
        ``map > threshold`` is anomalous.
    min_component : int or None, default 0
        If > 0, components with fewer voxels are removed per volume before counting.
    connectivity : int, default 3
        Component connectivity (26-connectivity in 3D).
    component_rule : {"fewer_than", "filled_at_most"}, default "fewer_than"
        See :func:`brainuad.evaluation.postprocess.remove_small_components`.

    Returns
    -------
    float
        2 * sum(TP) / (sum(predicted) + sum(lesion)).
    """
    return _dice_objective(_pairs(maps, segs, "segs"), min_component, connectivity, component_rule)(threshold)


def greedy_threshold_search(maps: Sequence, segs: Sequence, *, steps: int = 10, lo: float = 0.0,
                            hi: float | None = None, min_component: int | None = 0,
                            connectivity: int = 3, component_rule: str = "fewer_than",
                            ties: str = "first") -> tuple[float, float]:
    """Greedy bisection for the threshold that maximises the pooled Dice (Zimmerer et al.).

    Start with the interval [lo, hi]. At each step evaluate the pooled Dice at the quarter
    points ``lo + (hi - lo) / 4`` and ``lo + 3 (hi - lo) / 4`` and keep the half of the
    interval on the side of the better one (the lower half on a tie). Return the best quarter
    point seen over all steps: the earliest on a tie (``ties="first"``) or the latest
    (``ties="last"``, the author's code: ``if val >= max_val``).

    Parameters
    ----------
    maps : sequence of ndarray, each (D, H, W)
        Post-processed anomaly maps (protocol steps 1-2), e.g. of the validation volumes.
    segs : sequence of ndarray, each like the matching map
        Lesion segmentations; together they must contain at least one lesion voxel.
    steps : int, default 10
        Number of bisection steps (2 Dice evaluations each).
    lo : float, default 0.0
        Lower end of the start interval.
    hi : float or None, default None
        Upper end of the start interval; None = the maximum of all maps.
    min_component : int or None, default 0
        If > 0, the objective removes components with fewer voxels before counting (the
        ``cc_in_search`` switch of :func:`search_threshold`); 0 = no filtering inside the
        search, as in the public code.
    connectivity : int, default 3
        Component connectivity when ``min_component`` > 0.
    component_rule : {"fewer_than", "filled_at_most"}, default "fewer_than"
        Component rule when ``min_component`` > 0.
    ties : {"first", "last"}, default "first"
        Which of equally good candidates (over all steps) is returned.

    Returns
    -------
    threshold : float
    dice : float
        Pooled Dice at ``threshold``. If the interval is empty (``hi <= lo``, e.g. all-zero
        maps) the search returns ``lo`` and its Dice.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    pairs = _pairs(maps, segs, "segs")
    objective = _dice_objective(pairs, min_component, connectivity, component_rule)
    lo = float(lo)
    hi = float(max(float(np.max(a)) for a, _ in pairs)) if hi is None else float(hi)
    if not hi > lo:
        return lo, objective(lo)
    best_t, best_d = lo, -np.inf
    for _ in range(int(steps)):
        width = hi - lo
        t_low, t_high = lo + 0.25 * width, lo + 0.75 * width
        d_low, d_high = objective(t_low), objective(t_high)
        if d_low >= d_high:
            hi, t, d = lo + 0.5 * width, t_low, d_low
        else:
            lo, t, d = lo + 0.5 * width, t_high, d_high
        if d > best_d or (ties == "last" and d == best_d):
            best_t, best_d = t, d
    return float(best_t), float(best_d)


def exhaustive_threshold_search(maps: Sequence, segs: Sequence) -> tuple[float, float]:
    """Exact maximiser of the pooled Dice over all thresholds (no component filtering).

    Every set ``{map > t}`` equals ``{map > v}`` for some distinct map value v (or is the set of
    all voxels), so it suffices to score the distinct values; with the values sorted, the
    predicted and true-positive counts above each value are cumulative sums. Cost: one sort of
    all voxels (memory ~ 3 x 8 bytes per voxel).

    Parameters
    ----------
    maps, segs : sequences of ndarray
        As in :func:`greedy_threshold_search`.

    Returns
    -------
    threshold : float
        A distinct map value (the highest among equally good ones), or a value just below the
        minimum if flagging every voxel is best.
    dice : float
        The pooled Dice at ``threshold``; at least that of any other threshold.
    """
    pairs = _pairs(maps, segs, "segs")
    x = np.concatenate([a.ravel() for a, _ in pairs])
    y = np.concatenate([s.ravel() for _, s in pairs])
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        raise ValueError("the segmentations contain no lesion voxel: the pooled Dice is undefined")
    values, inverse = np.unique(x, return_inverse=True)  # ascending
    counts = np.bincount(inverse.ravel(), minlength=values.size)
    positives = np.bincount(inverse.ravel(), weights=y, minlength=values.size)
    n_above = x.size - np.cumsum(counts)  # voxels > values[j]
    tp_above = n_pos - np.cumsum(positives)
    scores = 2.0 * tp_above / (n_above + n_pos)
    j = values.size - 1 - int(np.argmax(scores[::-1]))  # highest threshold among ties
    best_t, best_d = float(values[j]), float(scores[j])
    d_all = 2.0 * n_pos / (x.size + n_pos)
    if d_all > best_d:
        best_t, best_d = float(np.nextafter(values[0], -np.inf)), d_all
    return best_t, best_d


def healthy_fpr_threshold(maps: Sequence, masks: Sequence, *, fpr: float = 0.01) -> tuple[float, float]:
    """Threshold flagging at most a fraction ``fpr`` of the brain voxels of healthy volumes.

    The threshold is the (1 - fpr) quantile of the pooled brain-voxel values
    (``np.quantile(..., method="higher")``, so it is an actual map value and, with the strict
    rule ``map > t``, the achieved rate never exceeds ``fpr``; it falls short only by ties).

    Parameters
    ----------
    maps : sequence of ndarray, each (D, H, W)
        Post-processed anomaly maps of healthy (lesion-free) volumes.
    masks : sequence of ndarray, each like the matching map
        Brain masks; voxels outside are ignored.
    fpr : float, default 0.01
        Target false-positive rate, in (0, 1).

    Returns
    -------
    threshold : float
    achieved_fpr : float
        Fraction of the pooled brain voxels with ``map > threshold``.
    """
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    pairs = _pairs(maps, masks, "masks")
    v = np.concatenate([a[m] for a, m in pairs])
    if v.size == 0:
        raise ValueError("the brain masks are empty")
    t = float(np.quantile(v, 1.0 - fpr, method="higher"))
    return t, float(np.count_nonzero(v > t) / v.size)


def search_threshold(maps: Sequence, segs: Sequence, protocol: str = "greedy", *,
                     cc_in_search: bool = False, **kw) -> tuple[float, float]:
    """Choose a threshold with one of the protocols (see the module docstring).

    Parameters
    ----------
    maps : sequence of ndarray, each (D, H, W)
        Post-processed anomaly maps.
    segs : sequence of ndarray
        Lesion segmentations for ``"greedy"`` and ``"exhaustive"``; brain masks of healthy
        volumes for ``"healthy_fpr"``.
    protocol : {"greedy", "exhaustive", "healthy_fpr"}, default "greedy"
    cc_in_search : bool, default False
        ``"greedy"`` only: filter components (size ``min_component``, default 7) inside the
        Dice objective. When False, a ``min_component`` keyword (e.g. the one from the config,
        meant for the final binarisation) is ignored by the search, as in the public code.
    **kw
        Passed on: ``steps``, ``lo``, ``hi``, ``min_component``, ``connectivity``,
        ``component_rule``, ``ties`` for ``"greedy"``; ``fpr`` for ``"healthy_fpr"``; none for
        ``"exhaustive"`` (``min_component``, ``component_rule`` and ``ties`` are ignored there: it
        returns the highest of equally good thresholds).

    Returns
    -------
    threshold : float
    score : float
        Pooled Dice (greedy, exhaustive) or achieved FPR (healthy_fpr).
    """
    if protocol == "greedy":
        if cc_in_search:
            kw.setdefault("min_component", 7)
        else:
            kw["min_component"] = 0
        return greedy_threshold_search(maps, segs, **kw)
    if cc_in_search:
        raise ValueError(f"cc_in_search is only supported by the 'greedy' protocol, not {protocol!r}")
    for key in ("min_component", "connectivity", "component_rule", "ties"):
        kw.pop(key, None)
    if protocol == "exhaustive":
        return exhaustive_threshold_search(maps, segs, **kw)
    if protocol == "healthy_fpr":
        return healthy_fpr_threshold(maps, segs, **kw)
    raise ValueError(f"unknown threshold protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
