"""Seeded data splits.

Healthy (training) datasets: a held-out healthy test set, then ``folds`` cross-validation folds of
train / validation on the rest, stratified by age (quantile bins) where ages exist — as in the
thesis (IXI: 160 test, 5 folds of 358 train / 44 val, age-stratified). Pathological datasets: an
unhealthy validation set (threshold search) and the test set. Data sets that ship their own split
(``author_split`` sources) keep it: :func:`splits_from_manifest` reads it from the manifest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainuad import paths
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit, train_test_split


def _count(value, n: int, what: str) -> int:
    """``value`` is a count (int >= 1) or a fraction in (0, 1) of ``n``."""
    k = int(round(value * n)) if isinstance(value, float) and 0 < value < 1 else int(value)
    if not 0 < k < n:
        raise ValueError(f"{what}={value!r} leaves no subjects on one side of the split (n={n})")
    return k


def _fits(value, n: int) -> bool:
    """Whether ``value`` (count or fraction, as in :func:`_count`) leaves subjects on both sides of ``n``."""
    k = int(round(value * n)) if isinstance(value, float) and 0 < value < 1 else int(value)
    return 0 < k < n


def min_subjects(role: str, *, folds: int = 5, test=0.28, val=0.1, val_fraction=None) -> int:
    """Fewest subjects the seeded splits of a dataset can be made from.

    Healthy: the test set plus at least ``max(folds, 2)`` subjects for the folds (with
    ``val_fraction``: a validation and a training subject each); pathology: a validation and a test
    subject (``val`` as in :func:`pathology_splits`).
    """
    def enough(n: int) -> bool:
        if role != "healthy":
            return _fits(val, n)
        if not _fits(test, n):
            return False
        rest = n - (int(round(test * n)) if isinstance(test, float) and 0 < test < 1 else int(test))
        return rest >= max(folds, 2) and (val_fraction is None or _fits(val_fraction, rest))

    return next(n for n in range(1, 1_000_000) if enough(n))


def check_enough_subjects(count: int, dataset: str, role: str, *, folds: int = 5, test=0.28, val=0.1,
                          val_fraction=None) -> None:
    """Raise a ValueError saying how many subjects are left, how many the splits need and where the
    excluded ones are listed, when ``count`` subjects are too few for :func:`min_subjects`."""
    needed = min_subjects(role, folds=folds, test=test, val=val, val_fraction=val_fraction)
    if count >= needed:
        return
    what = (f"a healthy test set (splits.healthy_test={test!r}) and {folds} folds (splits.folds"
            + ("" if val_fraction is None else f", splits.val_fraction={val_fraction!r}") + ")"
            if role == "healthy" else f"a validation set (val={val!r}) and a test set")
    raise ValueError(
        f"dataset {dataset}: {count} subject(s) left after exclusions, but {what} need at least {needed}; "
        f"the excluded subjects and why are listed in {paths.fill(paths.EXCLUSIONS, dataset=dataset)} "
        f"(manifest) and {paths.fill(paths.QC_EXCLUSIONS, dataset=dataset)} (every stage, written by the qc rule)"
    )


def age_strata(ages, bins: int, min_per_stratum: int) -> np.ndarray | None:
    """Quantile age bins usable for stratification, or None when ages are missing/too few.

    Bins are merged (fewer bins) until every stratum has at least ``min_per_stratum`` subjects.
    """
    ages = pd.to_numeric(pd.Series(list(ages)), errors="coerce")
    if ages.isna().any() or bins < 2:
        return None
    for b in range(bins, 1, -1):
        labels = pd.qcut(ages, q=b, labels=False, duplicates="drop")
        if labels.value_counts().min() >= min_per_stratum:
            return labels.to_numpy()
    return None


def healthy_splits(subjects, ages=None, *, folds: int = 5, test=0.28, val_fraction=None, age_bins: int = 5,
                   seed: int = 3141) -> dict:
    """Held-out test set + cross-validation folds on the remaining healthy subjects.

    Parameters
    ----------
    subjects : sequence of str
    ages : sequence of float, optional (missing -> no stratification)
    folds : int
        Number of folds (one model per fold).
    test : int or float
        Healthy test subjects (count, or fraction of all).
    val_fraction : float or None
        None: k-fold partition, each fold's validation set is one of ``folds`` disjoint chunks.
        A fraction: each fold draws its own validation set of that size (repeated stratified
        shuffle split), like the thesis' 358 / 44 folds.
    age_bins : int
        Quantile age bins for stratification.
    seed : int

    Returns
    -------
    dict ``{"test": [...], "folds": [{"train": [...], "val": [...]}, ...], "stratified": bool}``
    """
    subjects = np.asarray(list(subjects), dtype=str)
    order = np.argsort(subjects)
    subjects = subjects[order]
    ages = None if ages is None else np.asarray(list(ages), dtype=object)[order]
    n_test = _count(test, len(subjects), "test")
    strata = None if ages is None else age_strata(ages, age_bins, min_per_stratum=2)
    rest, test_ids, rest_ages = _split(subjects, n_test, strata, ages, seed)
    n_val = None if val_fraction is None else _count(val_fraction, len(rest), "val_fraction")
    # a stratified split needs every stratum on both sides: no more strata than the smaller side
    bins = age_bins if n_val is None else min(age_bins, n_val, len(rest) - n_val)
    rest_strata = None if rest_ages is None else age_strata(rest_ages, bins, min_per_stratum=max(folds, 2))
    if val_fraction is None:
        splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if rest_strata is not None
                    else KFold(folds, shuffle=True, random_state=seed))
    else:
        splitter = (StratifiedShuffleSplit(folds, test_size=n_val, random_state=seed) if rest_strata is not None
                    else ShuffleSplit(folds, test_size=n_val, random_state=seed))
    y = rest_strata if rest_strata is not None else np.zeros(len(rest))
    fold_list = [{"train": sorted(rest[tr].tolist()), "val": sorted(rest[va].tolist())}
                 for tr, va in splitter.split(rest, y)]
    return {"test": sorted(test_ids.tolist()), "folds": fold_list,
            "stratified": strata is not None and rest_strata is not None}


def _split(subjects, n_test, strata, ages, seed):
    idx = np.arange(len(subjects))
    try:
        rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strata)
    except ValueError:  # a stratum too small for the requested test size
        rest, test = train_test_split(idx, test_size=n_test, random_state=seed)
    rest = np.sort(rest)
    return subjects[rest], subjects[np.sort(test)], None if ages is None else ages[rest]


def pathology_splits(subjects, *, val=0.1, seed: int = 3141, train=0) -> dict:
    """Unhealthy validation / test split: ``{"val": [...], "test": [...]}`` (val = count or fraction).

    ``train`` (count or fraction of all subjects; 0 = none): labelled subjects for SADM Stage II (block III),
    drawn from what the validation draw leaves and removed from the test split: ``"train"`` is added and
    ``val``, ``train`` and ``test`` are disjoint. With ``train=0`` the split is the same as without it.
    """
    subjects = np.sort(np.asarray(list(subjects), dtype=str))
    n_val = _count(val, len(subjects), "val")
    test, val_ids = train_test_split(subjects, test_size=n_val, random_state=seed)
    out = {"val": sorted(val_ids.tolist())}
    if train:
        n_train = _count(train, len(subjects), "stage2_train")
        if n_train >= len(test):
            raise ValueError(f"stage2_train={train!r} leaves no test subjects ({len(test)} remain after val)")
        test, train_ids = train_test_split(np.sort(test), test_size=n_train, random_state=seed + 1)
        out["train"] = sorted(train_ids.tolist())
    out["test"] = sorted(test.tolist())
    return out


def splits_from_manifest(table: pd.DataFrame | list[dict]) -> dict:
    """The author's split membership (``split`` column of a manifest) as a splits dict.

    ``split`` holds comma-separated tags per subject: ``test``, ``val`` (pathology sets),
    ``train/<k>`` and ``val/<k>`` (healthy cross-validation fold k).

    Returns
    -------
    dict
        Healthy data (tags ``train/<k>`` / ``val/<k>``): ``{"test": [...], "folds": [{"train": [...],
        "val": [...]}, ...], "stratified": False, "origin": "author_split"}``, like
        :func:`healthy_splits`; pathology data: ``{"val": [...], "test": [...], "origin":
        "author_split"}`` like :func:`pathology_splits`. Only subjects present in ``table`` appear
        (excluded subjects drop out of every split).

    Raises
    ------
    ValueError
        No subject has a split tag.
    """
    records = table.to_dict("records") if isinstance(table, pd.DataFrame) else list(table)
    tags: dict[str, set[str]] = {}
    for rec in records:
        for tag in str(rec.get("split", "")).split(","):
            if tag.strip():
                tags.setdefault(tag.strip(), set()).add(str(rec["subject"]))
    if not tags:
        raise ValueError("no split membership in the table (the split column is empty)")
    folds = sorted({int(t.split("/")[1]) for t in tags if "/" in t})
    if folds:
        out = {"test": sorted(tags.get("test", ())),
               "folds": [{"train": sorted(tags.get(f"train/{k}", ())), "val": sorted(tags.get(f"val/{k}", ()))}
                         for k in range(max(folds) + 1)],
               "stratified": False}
    else:
        out = {"val": sorted(tags.get("val", ())), "test": sorted(tags.get("test", ()))}
        if "train" in tags:
            out["train"] = sorted(tags["train"])
    out["origin"] = "author_split"
    return out
