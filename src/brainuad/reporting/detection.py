"""Lesion-wise detection and healthy-FPR tables of a segmentation table's rows (report pages and a figure).

Lesion-wise (``report.lesionwise``): for every row, dataset and lesion-size stratum, the per-subject lesion
sensitivity (:mod:`brainuad.evaluation.lesions`, nanmean over the test subjects of a fold) and the
false-positive components per volume, each the mean ± std over folds. Healthy FPR (``report.healthy_fpr``):
the thresholds calibrated on the healthy validation maps at each target voxel FPR applied to the pathology
test sets (:func:`brainuad.evaluation.protocol.apply_fpr_thresholds`): Dice, voxel sensitivity and the FPR
reached on the healthy brain voxels of the pathology volumes, mean ± std over folds of the test-subject means.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..evaluation.lesions import normalise_strata  # noqa: E402
from .tables import row_label, table_row  # noqa: E402

#: the stratum name of all lesions together
ALL = "all"


def _test(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["split"] == "test"] if "split" in df.columns else df


def _mean_std(values) -> tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def stratum_label(name: str, strata: list[tuple[str, float]]) -> str:
    """'small (< 100 vox)', 'medium (100-999 vox)', 'large (>= 1000 vox)' or 'all'."""
    if name == ALL:
        return ALL
    lower = 0
    for n, upper in strata:
        if n == name:
            if upper == math.inf:
                return f"{n} (>= {lower:g} vox)"
            return f"{n} (< {upper:g} vox)" if lower == 0 else f"{n} ({lower:g}-{upper - 1:g} vox)"
        lower = upper
    raise ValueError(f"unknown stratum {name!r}")


def lesion_long(spec: dict, eval_dir, folds, models: dict, datasets: dict, strata: dict | None,
                default_run: str = "default") -> pd.DataFrame:
    """Long table: one line per (row, dataset, stratum, metric) with mean, std over folds, n_folds, lesions.

    Parameters
    ----------
    spec : dict
        A segmentation table's spec (``rows`` with an optional resolved ``protocol`` id, ``datasets``).
    eval_dir : callable
        ``eval_dir(model, run, fold, dataset, scoring, protocol) -> folder`` (:func:`brainuad.paths.eval_dir_lookup`).
    folds : list of int
    models, datasets : the config sections (labels)
    strata : ``evaluation.lesions.strata`` (None = the defaults)

    Returns
    -------
    DataFrame with ``row``, ``dataset``, ``dataset_label``, ``stratum``, ``metric`` (``lesion_sensitivity`` or
    ``fp_components``), ``mean``, ``std``, ``n_folds`` and ``lesions`` (test lesions of the stratum, mean over folds).
    """
    items = normalise_strata(strata)
    names = [ALL] + [n for n, _ in items]
    lines = []
    for row in spec["rows"]:
        row = table_row(row, default_run)
        for ds in spec["datasets"]:
            frames = []
            for fold in folds:
                d = Path(eval_dir(row["model"], row["run"], fold, ds, row["scoring"], row.get("protocol", "default")))
                frames.append(_test(pd.read_csv(d / "metrics.tsv", sep="\t")))
            for stratum in names:
                suffix = "" if stratum == ALL else f"_{stratum}"
                lesions = [df[f"n_lesions{suffix}"].sum() for df in frames if f"n_lesions{suffix}" in df]
                for metric in ("lesion_sensitivity", "fp_components"):
                    col = metric + suffix
                    vals = [float(np.nanmean(df[col])) if col in df and df[col].notna().any() else math.nan
                            for df in frames]
                    mean, std, n = _mean_std(vals)
                    lines.append({"row": row_label(row, models), "model": row["model"], "run": row["run"],
                                  "scoring": row["scoring"], "protocol": row.get("protocol", "default"),
                                  "dataset": ds, "dataset_label": datasets[ds].get("label", ds),
                                  "stratum": stratum, "stratum_label": stratum_label(stratum, items),
                                  "metric": metric, "mean": mean, "std": std, "n_folds": n,
                                  "lesions": float(np.mean(lesions)) if lesions else math.nan,
                                  "fold_values": ";".join(f"{v:.6g}" for v in vals)})
    return pd.DataFrame(lines)


def _cell(mean: float, std: float, n: int, scale: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean * scale:.2f} ± {std * scale:.2f}" if n > 1 else f"{mean * scale:.2f}"


def lesion_wide(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Display table of one metric: rows = 'model · stratum', columns = datasets; lesion sensitivity in %
    with the stratum's number of test lesions (mean over folds) as 'n='."""
    part = long[long["metric"] == metric]
    scale = 100.0 if metric == "lesion_sensitivity" else 1.0
    rows = list(dict.fromkeys(f"{r} · {s}" for r, s in zip(part["row"], part["stratum_label"])))
    cols = list(dict.fromkeys(part["dataset_label"]))
    out = pd.DataFrame(index=rows, columns=cols, dtype=object)
    for _, r in part.iterrows():
        text = _cell(r["mean"], r["std"], r["n_folds"], scale)
        if metric == "lesion_sensitivity" and math.isfinite(r["lesions"]):
            text += f" (n={r['lesions']:.0f})"
        out.loc[f"{r['row']} · {r['stratum_label']}", r["dataset_label"]] = text
    out.index.name = "Model · lesion size"
    return out.fillna("n/a")


def lesion_figure(long: pd.DataFrame, path: str | Path) -> None:
    """Grouped bars per dataset (columns): lesion sensitivity (top) and false-positive components per volume
    (bottom) for every stratum (x: name and voxel range) and row, error bars = std over folds; a stratum
    without test lesions says "no lesions" instead of a bar."""
    dsets = list(dict.fromkeys(long["dataset_label"]))
    rows = list(dict.fromkeys(long["row"]))
    strata = list(dict.fromkeys(long["stratum_label"]))
    fig, axes = plt.subplots(2, len(dsets), figsize=(3.4 * len(dsets) + 1, 6.0), squeeze=False)
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(strata))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, ds in enumerate(dsets):
        for i, (metric, ylabel, scale) in enumerate((("lesion_sensitivity", "lesion sensitivity (%)", 100.0),
                                                      ("fp_components", "FP components / volume", 1.0))):
            ax = axes[i, j]
            for k, row in enumerate(rows):
                part = long[(long["dataset_label"] == ds) & (long["row"] == row) & (long["metric"] == metric)]
                part = part.set_index("stratum_label").reindex(strata)
                xs = x + (k - (len(rows) - 1) / 2) * width
                mean = part["mean"].to_numpy(float) * scale
                ax.bar(xs, np.nan_to_num(mean), width, yerr=np.nan_to_num(part["std"].to_numpy(float) * scale),
                       label=row if (i, j) == (0, 0) else None, capsize=2, color=colours[k % len(colours)])
                if i == 0:
                    for xi, m in zip(xs, mean):
                        if not np.isfinite(m):
                            ax.text(xi, 2, "no lesions", rotation=90, ha="center", va="bottom", fontsize=7)
            ax.set_xticks(x, [s.replace(" (", "\n(") for s in strata], fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            if i == 0:
                ax.set_title(ds, fontsize=9)
                ax.set_ylim(0, 105)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
    fig.legend(loc="lower center", ncol=min(len(rows), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fpr_long(spec: dict, fpr_file, folds, models: dict, datasets: dict,
             default_run: str = "default") -> pd.DataFrame:
    """Long table of the healthy-FPR thresholds applied: one line per (row, dataset, target FPR, metric).

    ``fpr_file(model, run, fold, dataset, scoring, protocol) -> fpr.tsv``; metrics ``dice``, ``sensitivity``,
    ``fpr`` (mean over test subjects per fold, then mean ± std over folds) and ``threshold`` (per fold).
    """
    lines = []
    for row in spec["rows"]:
        row = table_row(row, default_run)
        for ds in spec["datasets"]:
            frames = [_test(pd.read_csv(fpr_file(row["model"], row["run"], fold, ds, row["scoring"],
                                                 row.get("protocol", "default")), sep="\t")) for fold in folds]
            targets = sorted(set().union(*(set(df["target_fpr"]) for df in frames)))
            for target in targets:
                for metric in ("dice", "sensitivity", "fpr", "threshold"):
                    vals = []
                    for df in frames:
                        v = df.loc[np.isclose(df["target_fpr"], target), metric]
                        vals.append(float(np.nanmean(v)) if v.notna().any() else math.nan)
                    mean, std, n = _mean_std(vals)
                    lines.append({"row": row_label(row, models), "model": row["model"], "run": row["run"],
                                  "scoring": row["scoring"], "protocol": row.get("protocol", "default"),
                                  "dataset": ds, "dataset_label": datasets[ds].get("label", ds),
                                  "target_fpr": float(target), "metric": metric, "mean": mean, "std": std,
                                  "n_folds": n, "fold_values": ";".join(f"{v:.6g}" for v in vals)})
    return pd.DataFrame(lines)


FPR_COLUMNS = {"dice": ("DICE", 100.0), "sensitivity": ("Sensitivity", 100.0), "fpr": ("FPR reached", 100.0)}


def fpr_wide(long: pd.DataFrame, dataset_label: str) -> pd.DataFrame:
    """Display table of one dataset: rows = 'model · target FPR', columns DICE, Sensitivity, FPR reached (%)."""
    part = long[(long["dataset_label"] == dataset_label) & long["metric"].isin(list(FPR_COLUMNS))]
    rows = list(dict.fromkeys(f"{r} · {t * 100:g} %" for r, t in zip(part["row"], part["target_fpr"])))
    out = pd.DataFrame(index=rows, columns=[v[0] for v in FPR_COLUMNS.values()], dtype=object)
    for _, r in part.iterrows():
        label, scale = FPR_COLUMNS[r["metric"]]
        out.loc[f"{r['row']} · {r['target_fpr'] * 100:g} %", label] = _cell(r["mean"], r["std"], r["n_folds"], scale)
    out.index.name = "Model · healthy FPR"
    return out.fillna("n/a")


def to_markdown(tables: dict[str, pd.DataFrame], title: str) -> str:
    """Markdown: the title, then one sub-heading and table per entry."""
    parts = [f"### {title}\n"]
    for name, table in tables.items():
        parts.append(f"#### {name}\n\n{table.to_markdown()}\n")
    return "\n".join(parts)


def lesionwise_pages(tsv: str | Path, spec: dict, note: str) -> list[tuple[str, pd.DataFrame, str]]:
    """Report pages (title, table, note) of a lesion-wise table: lesion sensitivity, then FP components."""
    long = pd.read_csv(tsv, sep="\t")
    title = spec.get("title", Path(tsv).stem)
    source = f" Source: {Path(tsv).name}; n = test lesions of the stratum (mean over folds)."
    return [(f"Lesion-wise sensitivity (%): {title}", lesion_wide(long, "lesion_sensitivity"), note + source),
            (f"False-positive components per volume: {title}", lesion_wide(long, "fp_components"), note + source)]


def healthy_fpr_pages(tsv: str | Path, spec: dict, caption: str) -> list[tuple[str, pd.DataFrame, str]]:
    """Report pages (title, table, note) of a healthy-FPR table: one page per dataset."""
    long = pd.read_csv(tsv, sep="\t")
    targets = ", ".join(f"{t * 100:g} %" for t in sorted(long["target_fpr"].unique()))
    note = caption.format(targets=targets, source=Path(tsv).name)
    title = spec.get("title", Path(tsv).stem)
    return [(f"Healthy-FPR thresholds on {label}: {title}", fpr_wide(long, label), note)
            for label in dict.fromkeys(long["dataset_label"])]
