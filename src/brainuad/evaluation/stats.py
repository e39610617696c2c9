"""Statistics of a result table: permutation tests, Holm correction and bootstrap confidence intervals.

The thesis tests "is model A better than model B" with the permutation test of MLxtend (Raschka 2018):
approximate, 10,000 rounds, statistic = difference of the two means, α = 5 % (method-spec §2.8). What it
leaves open is a setting here, with the thesis' choice (or MLxtend's default where the thesis is silent) as
default and the alternatives named (:data:`DEFAULTS`):

* ``unit``: ``subject`` (default) -- one value per test subject, its score averaged over the folds (every
  fold is evaluated on the same test subjects); ``fold`` -- one value per fold, the fold's mean over subjects.
  Dataset-level (pooled) metrics exist once per fold and always use ``fold``.
* ``paired``: ``false`` (default, MLxtend's default) -- the two rows' samples are exchangeable as a whole;
  ``true`` -- values are swapped only within a pair (the same subject or fold in both rows), the right test
  when the rows are evaluated on the same subjects.
* ``alternative``: ``greater`` (default; the thesis counts permutations whose mean difference is >= the
  observed one, a one-sided test) or ``two-sided``.
* ``correction``: ``none`` (default, as printed in the thesis) or ``holm`` across all comparisons of a table.
* ``engine``: ``mlxtend`` (default, the thesis' library) or ``numpy`` -- the same test vectorised over the
  rounds (identical p-values for paired tests, the same random stream; for unpaired tests the same
  procedure with its own random subsets), for large test sets (``benchmarks/bench_stats.py``).

Every cell also gets a percentile bootstrap CI of its mean over subjects (``scipy.stats.bootstrap``).
All functions are plain numpy/pandas; nothing here needs torch.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

#: settings of the tests of a table; config key ``stats`` (and ``tables.<name>.stats`` per table)
DEFAULTS = {
    "rounds": 10000,
    "seed": 0,
    "alpha": 0.05,
    "unit": "subject",
    "paired": False,
    "alternative": "greater",
    "correction": "none",
    "engine": "mlxtend",
    "ci_level": 0.95,
    "ci_resamples": 2000,
    "mark": "star",
}
UNITS = ("subject", "fold")
ALTERNATIVES = ("greater", "two-sided")
CORRECTIONS = ("none", "holm")
ENGINES = ("mlxtend", "numpy")
#: how a table marks a best row that is significantly better than every other row: "*" (P8.3) or
#: underline (thesis Tab4.5); both keep the best value in bold
MARKS = ("star", "underline")
#: rounds the numpy engine draws at once (memory: rounds x samples floats)
CHUNK = 1000


def settings(*layers: dict | None) -> dict:
    """:data:`DEFAULTS` updated by each given layer in turn (e.g. the config's ``stats``, then a table's);
    unknown keys and values outside the allowed choices raise ``ValueError``."""
    out = dict(DEFAULTS)
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in DEFAULTS:
                raise ValueError(f"stats: unknown setting {key!r}; allowed: {', '.join(DEFAULTS)}")
            out[key] = value
    for key, allowed in (("unit", UNITS), ("alternative", ALTERNATIVES), ("correction", CORRECTIONS),
                         ("engine", ENGINES), ("mark", MARKS)):
        if out[key] not in allowed:
            raise ValueError(f"stats.{key}: {out[key]!r} is not one of {', '.join(allowed)}")
    return out


def describe(s: dict) -> str:
    """One line naming the test a table used, e.g. for its caption."""
    side = "one-sided" if s["alternative"] == "greater" else "two-sided"
    kind = "paired" if s["paired"] else "unpaired"
    unit = "per-subject scores (mean over folds)" if s["unit"] == "subject" else "per-fold means"
    corr = ", Holm-corrected across the table" if s["correction"] == "holm" else ", no multiple-comparison correction"
    return (f"{kind} {side} permutation test ({s['engine']}, {s['rounds']} rounds, seed {s['seed']}) of the "
            f"difference of means on {unit}, alpha = {s['alpha']:g}{corr}")


# ---------------------------------------------------------------- the test
def permutation_pvalue(x, y, *, paired: bool = False, alternative: str = "greater", rounds: int = 10000,
                       seed: int = 0, engine: str = "mlxtend") -> float:
    """p-value of "mean(x) > mean(y)" (``greater``) or "means differ" (``two-sided``).

    Approximate permutation test as in ``mlxtend.evaluate.permutation_test(method="approximate")``:
    p = (1 + #rounds whose statistic is >= the observed one, ties by ``np.isclose``) / (rounds + 1).

    Parameters
    ----------
    x, y : array_like, shape (m,) and (n,)
        Samples of the two rows (``paired``: m == n, x[i] and y[i] belong together).
    paired : bool
        Exchange values only within a pair (random sign flip of x[i] - y[i]).
    alternative : {"greater", "two-sided"}
    rounds : int
    seed : int
    engine : {"mlxtend", "numpy"}

    Returns
    -------
    float in (0, 1]
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or y.ndim != 1 or not x.size or not y.size:
        raise ValueError(f"permutation test needs two non-empty 1-D samples, got shapes {x.shape} and {y.shape}")
    if paired and x.size != y.size:
        raise ValueError(f"a paired test needs samples of equal length, got {x.size} and {y.size}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative {alternative!r} is not one of {ALTERNATIVES}")
    if engine == "mlxtend":
        from mlxtend.evaluate import permutation_test

        func = "x_mean > y_mean" if alternative == "greater" else "x_mean != y_mean"
        return float(permutation_test(x, y, func=func, method="approximate", num_rounds=int(rounds),
                                      seed=int(seed), paired=bool(paired)))
    if engine != "numpy":
        raise ValueError(f"engine {engine!r} is not one of {ENGINES}")
    return _numpy_pvalue(x, y, paired, alternative, int(rounds), int(seed))


@functools.lru_cache(maxsize=4)
def _draws(paired: bool, m: int, n: int, rounds: int, seed: int) -> tuple[np.ndarray, ...]:
    """The random part of a test, which depends only on the sample sizes: paired, the swap masks (rounds, m)
    MLxtend draws (``RandomState(seed).randn(m) > 0`` per round); unpaired, the indices (rounds, m) of a random
    m-subset of the m + n pooled values per round. Cached, so the tests of one table column (same subjects,
    same seed -- as MLxtend with a fixed seed, which repeats its shuffles) draw once."""
    rng = np.random.RandomState(seed)
    chunks, done = [], 0
    while done < rounds:
        r = min(CHUNK, rounds - done)
        if paired:
            chunks.append(rng.randn(r, m) > 0.0)
        else:
            keys = rng.random_sample((r, m + n))
            chunks.append(np.argpartition(keys, m - 1, axis=1)[:, :m].astype(np.int32))
        done += r
    return tuple(chunks)


def _numpy_pvalue(x, y, paired, alternative, rounds, seed) -> float:
    two = alternative == "two-sided"
    ref = x.mean() - y.mean()
    ref = abs(ref) if two else ref
    count = 0
    m, n = x.size, y.size
    combined, total = np.concatenate([x, y]), x.sum() + y.sum()
    d = x - y if paired else None
    d_sum = d.sum() if paired else None
    for draw in _draws(bool(paired), m, n, rounds, seed):
        if paired:  # mean(swapped x) - mean(swapped y) = (sum(d) - 2 * sum of the swapped d) / m, d = x - y
            stat = (d_sum - 2.0 * (draw @ d)) / m
        else:
            sub = combined[draw].sum(axis=1)
            stat = sub / m - (total - sub) / n
        stat = np.abs(stat) if two else stat
        count += int(np.count_nonzero((stat > ref) | np.isclose(stat, ref)))
    return (count + 1.0) / (rounds + 1.0)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given; NaN stays NaN).

    p_adj(i) = max over j <= i of min(1, (k - j + 1) p_(j)) for the sorted p-values p_(1) <= ... <= p_(k).
    Reject H_i at level alpha exactly when p_adj(i) <= alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not ok.size:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    k = order.size
    scaled = np.minimum(1.0, (k - np.arange(k)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def bootstrap_ci(values, *, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (shape (n,)); (v, v) for a single value, (nan, nan)
    for none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1 or np.all(v == v[0]):
        return float(v[0]), float(v[0])
    from scipy.stats import bootstrap

    res = bootstrap((v,), np.mean, confidence_level=level, n_resamples=int(resamples), method="percentile",
                    random_state=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# ---------------------------------------------------------------- samples of a cell
def read_fold(metrics_tsv: str | Path, threshold_json: str | Path) -> tuple[pd.DataFrame, dict]:
    """(test-subject rows of metrics.tsv, the ``pooled`` metrics of threshold.json) of one evaluation."""
    df = pd.read_csv(metrics_tsv, sep="\t")
    if "split" in df.columns:
        df = df[df["split"] == "test"]
    if "subject" not in df.columns:
        raise ValueError(f"{metrics_tsv}: no 'subject' column; cannot test per subject")
    pooled = json.loads(Path(threshold_json).read_text()).get("pooled", {}) if Path(threshold_json).exists() else {}
    return df, pooled


def cell_samples(folds: list[tuple[pd.DataFrame, dict]], metric: str, pooled_metrics=()) -> dict:
    """Samples of one (row, dataset, metric) cell from its folds.

    Parameters
    ----------
    folds : list of (metrics rows, pooled dict), one per fold (:func:`read_fold`)
    metric : str
    pooled_metrics : names of dataset-level metrics (one value per fold)

    Returns
    -------
    dict with ``subject`` (Series indexed by subject: mean over the folds; None for a pooled metric),
    ``fold`` (Series indexed by fold number: the fold's mean over subjects, or its pooled value) and
    ``fold_mean`` (mean of the fold values: the table cell).
    """
    per_fold, frames = {}, []
    for k, (df, pooled) in enumerate(folds):
        if metric in pooled_metrics:
            per_fold[k] = float(pooled.get(metric, math.nan))
            continue
        if metric not in df.columns:
            per_fold[k] = math.nan
            continue
        v = pd.to_numeric(df[metric], errors="coerce")
        per_fold[k] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
        frames.append(pd.DataFrame({"subject": df["subject"].astype(str).to_numpy(), "v": v.to_numpy(dtype=float)}))
    fold = pd.Series(per_fold, dtype=float).dropna()
    subject = None
    if metric not in pooled_metrics and frames:
        subject = pd.concat(frames).groupby("subject")["v"].mean().dropna()
    return {"subject": subject, "fold": fold, "fold_mean": float(fold.mean()) if len(fold) else math.nan}


def unit_of(samples: dict, unit: str) -> tuple[str, pd.Series]:
    """(unit used, sample) of a cell: ``fold`` whenever the cell has no per-subject values."""
    if unit == "subject" and samples["subject"] is not None and len(samples["subject"]):
        return "subject", samples["subject"]
    return "fold", samples["fold"]


def compare(a: pd.Series, b: pd.Series, s: dict, *, higher_is_better: bool = True) -> dict:
    """Test "row a is better than row b" on two unit samples (Series indexed by subject or fold).

    Paired tests use the units present in both; the values are negated first when lower is better.

    Returns
    -------
    dict: ``p``, ``effect`` (mean(a) - mean(b) in metric units, on the units tested), ``n_a``, ``n_b``,
    ``paired`` (bool)
    """
    if s["paired"]:
        common = a.index.intersection(b.index)
        if not len(common):
            raise ValueError("a paired test needs rows evaluated on the same subjects; none are shared")
        a, b = a.loc[common], b.loc[common]
    x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
    effect = float(x.mean() - y.mean())
    sign = 1.0 if higher_is_better else -1.0
    if not x.size or not y.size:
        return {"p": math.nan, "effect": effect, "n_a": x.size, "n_b": y.size, "paired": bool(s["paired"])}
    p = permutation_pvalue(sign * x, sign * y, paired=s["paired"], alternative=s["alternative"],
                           rounds=s["rounds"], seed=s["seed"], engine=s["engine"])
    return {"p": p, "effect": effect, "n_a": int(x.size), "n_b": int(y.size), "paired": bool(s["paired"])}


# ---------------------------------------------------------------- a table
def table_stats(spec: dict, load: Callable, folds, models: dict, datasets: dict, s: dict,
                metrics: dict, pooled_metrics=(), default_run: str = "default") -> pd.DataFrame:
    """Tests and CIs of every cell of one configured table.

    In every column (dataset x metric) the best row (best mean of fold means, as the table's bold) is
    tested against each other row; the table's family of p-values is Holm-corrected when
    ``s["correction"] == "holm"``. ``star`` = the best row is significantly better than every other row.

    Parameters
    ----------
    spec : dict
        The table's config entry (``rows``, ``datasets``, ``metrics``).
    load : callable
        ``load(model, run, fold, dataset, scoring) -> (metrics rows, pooled dict)`` (:func:`read_fold`).
    folds : list of int
    models, datasets : the config sections (labels)
    s : dict
        :func:`settings`.
    metrics : dict
        ``{name: (label, scale, higher_is_better)}`` (:data:`brainuad.reporting.tables.METRICS`).
    pooled_metrics : names of the dataset-level metrics

    Returns
    -------
    DataFrame, one line per (row, dataset, metric): ``row, model, run, scoring, dataset, metric, unit,
    n_units, unit_mean, ci_low, ci_high, ci_n, best, p_vs_best, p_adjusted, worse_than_best, star, test``
    (values in metric units, not display units).
    """
    from brainuad.reporting.tables import row_label, table_row

    cache = {}

    def read(*key):  # every evaluation is read once per table, not once per metric
        if key not in cache:
            cache[key] = load(*key)
        return cache[key]

    lines = []
    for ds in spec["datasets"]:
        for metric in spec["metrics"]:
            higher = metrics.get(metric, (metric, 1.0, True))[2]
            cells = []
            for row in spec["rows"]:
                row = table_row(row, default_run)
                extra = (row["protocol"],) if row.get("protocol", "default") != "default" else ()
                got = [read(row["model"], row["run"], f, ds, row["scoring"], *extra) for f in folds]
                samples = cell_samples(got, metric, pooled_metrics)
                cells.append((row, row_label(row, models), samples))
            means = {i: c[2]["fold_mean"] for i, c in enumerate(cells) if math.isfinite(c[2]["fold_mean"])}
            best = (max if higher else min)(means, key=means.get) if means else None
            for i, (row, label, samples) in enumerate(cells):
                unit, sample = unit_of(samples, s["unit"])
                ci_values = samples["subject"] if samples["subject"] is not None else samples["fold"]
                lo, hi = bootstrap_ci(ci_values.to_numpy(), level=s["ci_level"], resamples=s["ci_resamples"],
                                      seed=s["seed"])
                p = math.nan
                if best is not None and i != best and i in means:
                    bunit, bsample = unit_of(cells[best][2], unit)
                    p = compare(bsample, sample, s, higher_is_better=higher)["p"] if bunit == unit else math.nan
                lines.append({"row": label, "model": row["model"], "run": row["run"], "scoring": row["scoring"],
                              "dataset": ds, "metric": metric, "unit": unit, "n_units": int(len(sample)),
                              "unit_mean": float(sample.mean()) if len(sample) else math.nan,
                              "ci_low": lo, "ci_high": hi, "ci_n": int(np.isfinite(ci_values).sum()),
                              "best": i == best, "p_vs_best": p})
    out = pd.DataFrame(lines)
    if out.empty:
        return out
    out["p_adjusted"] = holm(out["p_vs_best"]) if s["correction"] == "holm" else out["p_vs_best"]
    out["worse_than_best"] = out["p_adjusted"] < s["alpha"]
    out["star"] = False
    for (ds, metric), part in out.groupby(["dataset", "metric"], sort=False):
        others = part[~part["best"] & np.isfinite(part["unit_mean"])]
        if part["best"].any() and len(others) and others["worse_than_best"].all():
            out.loc[part.index[part["best"]], "star"] = True
    out["test"] = describe(s)
    return out
