"""Sweeps as a table and a figure: metrics against the swept value (Figures 4.2 / 4.4 analogues).

Scoring sweeps (``scoring_sweeps``): one scoring parameter of one model's stored reconstructions, one
line per dataset. Model sweeps (``sweeps``, rows of a config/sweeps/*.tsv table): one line per model and
dataset, with the configured model (``reference``) as dashed lines. Keys: config/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paths import eval_dir_lookup
from .figures import sweep_figure
from .tables import METRICS, aggregate, row_scoring


def sweep_metrics(sweep: dict) -> list[str]:
    """The metrics of a sweep: ``metrics``, else ``[metric]``, else ``["dice_oracle"]``."""
    return sweep.get("metrics") or [sweep.get("metric", "dice_oracle")]


def collect_sweep(kind: str, sweep: dict, *, ids: list[str], points: list[dict], folds, models: dict,
                  datasets: dict, run: str, protocol: str = "default") -> tuple[pd.DataFrame, pd.DataFrame | None, str, str]:
    """Aggregate every point of a sweep (and its reference) over the folds.

    Parameters
    ----------
    kind : {"scoring", "model"}
    sweep : dict
        The sweep's config entry.
    ids : list of str
        Scoring sweep: the scoring id of each of ``sweep["values"]``.
    points : list of dict
        Model sweep: one ``{"run", "value"}`` per row of the sweep table.
    folds, models, datasets, run
        Fold numbers, the ``models`` and ``datasets`` config sections, the default run id.
    protocol : str
        The sweep's evaluation protocol id (:mod:`brainuad.evaluation.overrides`).

    Returns
    -------
    long : DataFrame, :func:`~brainuad.reporting.tables.aggregate` lines plus ``value`` and ``series``
    reference : DataFrame of the reference's lines (with ``series``) or None
    param : str, the x-axis label
    reference_label : str, the legend entry of the dashed lines
    """
    eval_dir = eval_dir_lookup(datasets)
    metrics = sweep_metrics(sweep)

    def collect(model, run_id, scoring):
        spec = {"rows": [{"model": model, "run": run_id, "scoring": scoring, "protocol": protocol}],
                "datasets": sweep["datasets"],
                "metrics": metrics}
        return aggregate(spec, eval_dir, folds, models, datasets, default_run=run)

    parts, refs = [], []
    if kind == "scoring":
        for value, sid in zip(sweep["values"], ids):
            parts.append(collect(sweep["model"], run, sid).assign(value=value))
        if sweep.get("reference"):
            refs.append(collect(sweep["model"], run, sweep["reference"]))
        param = f"{sweep['scoring']}: {sweep['param']}"
        reference_label = sweep.get("reference", "")
    else:
        scoring = row_scoring(sweep)
        for model in sweep["models"]:
            for point in points:
                parts.append(collect(model, point["run"], scoring).assign(value=point["value"]))
            if sweep.get("reference"):
                refs.append(collect(model, sweep["reference"], scoring))
        param = sweep.get("x") or next(iter(sweep["set"]))
        reference_label = sweep.get("reference_label", "configured model")
    several_models = kind == "model" and len(sweep["models"]) > 1

    def series(df):
        return df["row"] + " · " + df["dataset_label"] if several_models else df["dataset_label"]

    long = pd.concat(parts, ignore_index=True)
    long["series"] = series(long)
    reference = None
    if refs:
        reference = pd.concat(refs, ignore_index=True)
        reference["series"] = series(reference)
    return long, reference, param, reference_label


def in_display_units(long: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Copy with ``mean`` and ``std`` (where present) in display units (x 100 for %, ...) and numeric ``value``."""
    scale = long["metric"].map({m: METRICS[m][1] for m in metrics})
    out = long.assign(mean=long["mean"] * scale)
    if "std" in out:
        out["std"] = out["std"] * scale
    if "value" in out:
        out["value"] = out["value"].astype(float)
    return out


def metric_axis_labels(metrics: list[str]) -> dict[str, str]:
    """Y-axis label per metric: the column label, with " (%)" for metrics shown in percent."""
    return {m: f"{METRICS[m][0]} (%)" if METRICS[m][1] == 100 else METRICS[m][0] for m in metrics}


def write_sweep(figure: str | Path, table: str | Path, kind: str, sweep: dict, **collect) -> pd.DataFrame:
    """Write a sweep's table (TSV, numeric) and its figure.

    Parameters
    ----------
    figure, table : output image and TSV
    kind, sweep : as :func:`collect_sweep`
    **collect : the other keywords of :func:`collect_sweep`

    Returns
    -------
    The table written: the sweep's lines, then the reference's with ``value = "reference:<reference>"``.
    """
    long, reference, param, reference_label = collect_sweep(kind, sweep, **collect)
    out = long
    if reference is not None:
        out = pd.concat([long, reference.assign(value="reference:" + str(sweep["reference"]))], ignore_index=True)
    out.to_csv(table, sep="\t", index=False)
    metrics = sweep_metrics(sweep)
    sweep_figure(in_display_units(long, metrics), figure, param=param, metric_labels=metric_axis_labels(metrics),
                 reference=None if reference is None else in_display_units(reference, metrics),
                 reference_label=reference_label, title=sweep.get("title", ""))
    return out
