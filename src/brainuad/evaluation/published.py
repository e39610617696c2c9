"""Published numbers of the thesis (config/published/<table>.tsv) and their side-by-side comparison with a run.

One TSV per published table, one line per cell: ``paper`` (thesis or P8.x), ``table`` (e.g. Tab4.4),
``row`` (unique row key, e.g. ``cDDPM | ENS | SSL``), ``source_row`` (the row label as printed), ``column``
(dataset column as printed, e.g. ``BRATS (T2)``), ``metric`` (a :data:`brainuad.reporting.tables.METRICS`
name where one exists, else the printed name, e.g. ``dice_d``), ``unit`` (``%``, ``dB``, ``e-3``, ``ratio``),
``mean``, ``std`` (empty where none is printed), ``text`` (the value as printed, without marks) and
``marks`` (``bold``, ``underline``, ``star``, comma-separated).

A config table reproduces one of them with ``published: {table, rows: {row label: published row},
datasets: {dataset: published column}, metrics: {metric: published metric}}``.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["paper", "table", "row", "source_row", "column", "metric", "unit", "mean", "std", "text", "marks"]


def read_published(path: str | Path) -> pd.DataFrame:
    """Read and check one published-numbers TSV.

    Raises
    ------
    ValueError
        Naming the file and the problem: a missing column, a non-numeric mean/std, a duplicate cell.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: published-numbers file does not exist")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    lacking = [c for c in COLUMNS if c not in df.columns]
    if lacking:
        raise ValueError(f"{path}: missing column(s) {', '.join(lacking)}; expected {', '.join(COLUMNS)}")
    for col in ("mean", "std"):
        values = pd.to_numeric(df[col].where(df[col] != ""), errors="coerce")
        bad = df[col][values.isna() & (df[col] != "")]
        if col == "mean" and (df[col] == "").any():
            bad = pd.concat([bad, df[col][df[col] == ""]])
        if len(bad):
            line = int(bad.index[0]) + 2
            raise ValueError(f"{path}: line {line}: {col} {bad.iloc[0]!r} is not a number")
        df[col] = values
    dup = df.duplicated(["row", "column", "metric"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise ValueError(f"{path}: cell (row {r['row']!r}, column {r['column']!r}, metric {r['metric']!r}) appears "
                         "more than once")
    return df


def side_by_side(table_long: pd.DataFrame, spec: dict, published: pd.DataFrame, metrics: dict) -> pd.DataFrame:
    """Reproduced vs published cells of one table, in display units.

    Parameters
    ----------
    table_long : a table's long TSV (:func:`brainuad.reporting.tables.aggregate` + ``attach_stats``: ``row,
        dataset, metric, mean`` and, where tested, ``ci_low, ci_high`` in metric units)
    spec : the table's ``published`` entry
    published : :func:`read_published`
    metrics : ``{name: (label, scale, higher_is_better)}``

    Returns
    -------
    DataFrame: ``row, dataset, metric, reproduced, ci_low, ci_high, published, published_std, difference,
    outside_ci, published_row, published_column, source`` -- one line per mapped cell the publication has;
    ``outside_ci``: the published mean lies outside the reproduced bootstrap CI.
    """
    rows_map, ds_map, m_map = spec.get("rows", {}), spec.get("datasets", {}), spec.get("metrics", {})
    pub = published.set_index(["row", "column", "metric"])
    lines = []
    for _, r in table_long.iterrows():
        prow, pcol, pmet = rows_map.get(r["row"]), ds_map.get(r["dataset"]), m_map.get(r["metric"], r["metric"])
        if prow is None or pcol is None or (prow, pcol, pmet) not in pub.index:
            continue
        scale = metrics.get(r["metric"], (r["metric"], 1.0, True))[1]
        p = pub.loc[(prow, pcol, pmet)]
        mean = float(r["mean"]) * scale
        lo, hi = (float(r.get(k, math.nan)) * scale for k in ("ci_low", "ci_high"))
        diff = mean - float(p["mean"])
        outside = bool(math.isfinite(lo) and math.isfinite(hi) and not (lo <= float(p["mean"]) <= hi))
        lines.append({"row": r["row"], "dataset": r["dataset"], "metric": r["metric"], "reproduced": mean,
                      "ci_low": lo, "ci_high": hi, "published": float(p["mean"]), "published_std": float(p["std"]),
                      "difference": diff, "outside_ci": outside, "published_row": prow, "published_column": pcol,
                      "source": f"{p['paper']} {p['table']}"})
    return pd.DataFrame(lines, columns=["row", "dataset", "metric", "reproduced", "ci_low", "ci_high", "published",
                                        "published_std", "difference", "outside_ci", "published_row",
                                        "published_column", "source"])


def display(sbs: pd.DataFrame, metrics: dict, datasets: dict) -> pd.DataFrame:
    """Formatted copy for the report: reproduced [CI], published ± std, difference, flag."""
    out = pd.DataFrame({
        "row": sbs["row"],
        "cell": [f"{datasets.get(d, {}).get('label', d)} · {metrics.get(m, (m,))[0]}"
                 for d, m in zip(sbs["dataset"], sbs["metric"])],
        "reproduced [95 % CI]": [f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else f"{v:.2f}"
                                 for v, lo, hi in zip(sbs["reproduced"], sbs["ci_low"], sbs["ci_high"])],
        "published": [f"{v:.2f}" + (f" ± {s:.2f}" if math.isfinite(s) else "")
                      for v, s in zip(sbs["published"], sbs["published_std"])],
        "difference": [f"{d:+.2f}" for d in sbs["difference"]],
        "outside CI": ["**yes**" if o else "no" for o in sbs["outside_ci"]],
        "source": [textwrap.fill(f"{s}: {r}", 24) for s, r in zip(sbs["source"], sbs["published_row"])],
    })
    return out.set_index("row")
