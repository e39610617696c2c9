"""Tables as data: aggregate per-subject metrics into mean ± std across folds, write TSV/Markdown/LaTeX.

A table spec (one entry of ``config["tables"]``) lists rows (model x run x scoring) and columns
(datasets x metrics). For every cell, each fold contributes one value — the mean over the test
subjects of a per-subject metric, or a dataset-level (pooled) value from ``threshold.json`` — and
the cell reports the mean and the sample standard deviation (ddof = 1) across folds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import entry_backbone_label, entry_configured

#: name -> (column label, display scale, higher is better)
METRICS = {
    "dice_oracle": ("[DICE]", 100.0, True),
    "dice": ("DICE", 100.0, True),
    "auprc": ("AUPRC", 100.0, True),
    "auprc_pooled": ("AUPRC pooled", 100.0, True),
    "dice_pooled": ("DICE pooled", 100.0, True),
    "precision": ("Precision", 100.0, True),
    "recall": ("Recall", 100.0, True),
    "l1_ratio": ("l1-ratio", 1.0, True),
    "l1_lesion": ("l1 lesion (e-3)", 1000.0, False),
    "l1_healthy": ("l1 healthy (e-3)", 1000.0, False),
    "ssim": ("SSIM", 100.0, True),
    "psnr": ("PSNR (dB)", 1.0, True),
    "l1": ("l1 (e-3)", 1000.0, False),
    "lpips": ("LPIPS (e-3)", 1000.0, False),
    "auroc": ("AUROC", 100.0, True),
    "auroc_pooled": ("AUROC pooled", 100.0, True),
    "lesion_sensitivity": ("Lesion sens.", 100.0, True),
    "lesion_sensitivity_pooled": ("Lesion sens. pooled", 100.0, True),
    "fp_components": ("FP comp./vol.", 1.0, False),
}

#: metrics that need an optional resource; a fold without it records ``{metric: "not configured"}``
#: in threshold.json and the table cell says so instead of "n/a"
OPTIONAL = {"lpips"}

#: cell text of a row whose model's backbone weights are not configured (brainuad.models.backbones)
NOT_CONFIGURED = "not configured"

#: metrics stored once per dataset and fold in threshold.json["pooled"] rather than per subject
POOLED = {"auprc_pooled", "dice_pooled", "auroc_pooled", "lesion_sensitivity_pooled"}

#: the scoring of a table row or model sweep that names none
DEFAULT_SCORING = "l1"


def table_row(row: dict, default_run: str = "default") -> dict:
    """A table row with its defaults filled in: ``scoring`` :data:`DEFAULT_SCORING`, ``run`` ``default_run``."""
    return {"scoring": DEFAULT_SCORING, "run": default_run, **row}


def row_scoring(row: dict) -> str:
    """Scoring id of a table row or a model sweep: its ``scoring``, else :data:`DEFAULT_SCORING`."""
    return row.get("scoring", DEFAULT_SCORING)


def row_label(row: dict, models: dict) -> str:
    """Label of a table row: its own ``label``, else the model's ``label``, else the model name."""
    return row.get("label") or models[row["model"]].get("label", row["model"])


def subject_values(metrics_tsv: str | Path, metric: str) -> np.ndarray:
    """Per-subject values of ``metric`` on the test subjects of one fold (NaN where undefined)."""
    df = pd.read_csv(metrics_tsv, sep="\t")
    if "split" in df.columns:
        df = df[df["split"] == "test"]
    if metric not in df.columns:
        return np.full(len(df), math.nan)
    return pd.to_numeric(df[metric], errors="coerce").to_numpy(dtype=float)


def fold_value(metrics_tsv: str | Path, threshold_json: str | Path, metric: str) -> float:
    """One fold's value of ``metric``: nanmean over test subjects, or the pooled value."""
    if metric in POOLED:
        return float(json.loads(Path(threshold_json).read_text()).get("pooled", {}).get(metric, math.nan))
    values = subject_values(metrics_tsv, metric)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def aggregate(spec: dict, eval_dir, folds, models: dict, datasets: dict, default_run: str = "default") -> pd.DataFrame:
    """Long-format table: one line per (row, dataset, metric) with mean, std and the fold values.

    Parameters
    ----------
    spec : dict
        Table spec with ``rows`` (``model``, optional ``scoring``, ``run``, ``label``), ``datasets``,
        ``metrics``.
    eval_dir : callable
        ``eval_dir(model, run, fold, dataset, scoring) -> folder`` holding metrics.tsv and threshold.json.
    folds : list of int
    models, datasets : dict
        The config sections (for labels).

    The spec's optional ``spread`` says what the ± of a cell is: ``"folds"`` (default) the sample std
    (ddof = 1) of the fold values; ``"subjects"`` (P8.1's DICE_S "mu ± sigma") the sample std of the
    per-subject values of all test subjects of all folds, for per-subject metrics (pooled metrics keep
    the fold spread). ``n_spread`` is the number of values behind the std (``n_folds`` with ``"folds"``).
    """
    spread = spec.get("spread", "folds")
    if spread not in ("folds", "subjects"):
        raise ValueError(f"table spread must be 'folds' or 'subjects', got {spread!r}")
    lines = []
    for row in spec["rows"]:
        row = table_row(row, default_run)
        model, scoring, run = row["model"], row["scoring"], row["run"]
        label = row_label(row, models)
        backbone = entry_backbone_label(models[model])
        if not entry_configured(models[model]):  # no job ran: the row says so, never a number
            for ds in spec["datasets"]:
                for metric in spec["metrics"]:
                    lines.append({"row": label, "model": model, "run": run, "scoring": scoring, "dataset": ds,
                                  "dataset_label": datasets[ds].get("label", ds), "metric": metric, "mean": math.nan,
                                  "std": math.nan, "n_folds": 0, "n_spread": 0, "fold_values": "",
                                  "note": NOT_CONFIGURED, "backbone": backbone})
            continue
        # a row under its own evaluation protocol (brainuad.evaluation.overrides) reads that evaluation
        extra = (row["protocol"],) if row.get("protocol", "default") != "default" else ()
        for ds in spec["datasets"]:
            for metric in spec["metrics"]:
                vals = []
                for fold in folds:
                    d = Path(eval_dir(model, run, fold, ds, scoring, *extra))
                    vals.append(fold_value(d / "metrics.tsv", d / "threshold.json", metric))
                arr = np.asarray(vals, dtype=float)
                finite = arr[np.isfinite(arr)]
                std_of = finite
                if spread == "subjects" and metric not in POOLED:
                    subj = np.concatenate([subject_values(Path(eval_dir(model, run, f, ds, scoring, *extra)) / "metrics.tsv",
                                                          metric) for f in folds])
                    std_of = subj[np.isfinite(subj)]
                note = ""
                summary = json.loads((Path(eval_dir(model, run, folds[0], ds, scoring, *extra)) / "threshold.json").read_text())
                if not finite.size:
                    if summary.get("not_configured"):  # a scoring whose pre-trained weights are missing
                        note = NOT_CONFIGURED
                    elif metric in OPTIONAL:
                        note = str(summary.get(metric, ""))
                if not backbone and summary.get("backbone"):  # the backbone of the scoring (e.g. l1_lpips)
                    backbone = f"{summary['backbone']} (scoring {scoring})"
                lines.append({
                    "row": label, "model": model, "run": run, "scoring": scoring, "dataset": ds,
                    "dataset_label": datasets[ds].get("label", ds), "metric": metric,
                    "mean": float(finite.mean()) if finite.size else math.nan,
                    "std": float(std_of.std(ddof=1)) if std_of.size > 1 else (0.0 if std_of.size else math.nan),
                    "n_folds": int(finite.size), "n_spread": int(std_of.size) if finite.size else 0,
                    "fold_values": ";".join(f"{v:.6g}" for v in arr),
                    "note": note,
                    "backbone": backbone,
                })
    return pd.DataFrame(lines)


def configured_rows(spec: dict, models: dict) -> dict:
    """The table spec without the rows of models whose backbone is not configured (they have no results)."""
    return {**spec, "rows": [r for r in spec["rows"] if entry_configured(models[r["model"]])]}


def backbone_note(long: pd.DataFrame) -> str:
    """' Backbones: FAE = ImageNet resnet18 (r18.pth); RD = ...' for the rows that use one, else ''."""
    if "backbone" not in long.columns:
        return ""
    pairs = {}
    for _, r in long.iterrows():
        if isinstance(r["backbone"], str) and r["backbone"]:
            pairs.setdefault(r["row"], r["backbone"] + (" - not configured" if r.get("note") == NOT_CONFIGURED else ""))
    return (" Backbones: " + "; ".join(f"{k} = {v}" for k, v in pairs.items()) + ".") if pairs else ""


def format_cell(mean: float, std: float, n_folds: int, metric: str) -> str:
    """'12.34 ± 0.56' in display units; 'n/a' when no fold has a value."""
    if not math.isfinite(mean):
        return "n/a"
    scale = METRICS.get(metric, (metric, 1.0, True))[1]
    if n_folds > 1:
        return f"{mean * scale:.2f} ± {std * scale:.2f}"
    return f"{mean * scale:.2f}"


#: columns :func:`attach_stats` copies from the statistics TSV into a table's long TSV
STATS_COLUMNS = ["unit", "n_units", "ci_low", "ci_high", "p_vs_best", "p_adjusted", "star", "test"]


def attach_stats(long: pd.DataFrame, stats: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """The table's long format with its statistics beside every cell (``brainuad.evaluation.stats``).

    Adds :data:`STATS_COLUMNS` (CI bounds in metric units, p-value of the best row against this row, Holm-adjusted
    when configured, ``star`` = best and significantly better than every other row) and ``mark``: the mark the
    cell is printed with (``star`` or ``underline`` per ``settings["mark"]`` where ``star`` holds, else empty).
    """
    keys = ["row", "dataset", "metric"]
    if stats.empty:
        out = long.copy()
        for col in STATS_COLUMNS:
            out[col] = pd.NA
        out["mark"] = ""
        return out
    out = long.merge(stats[keys + STATS_COLUMNS], on=keys, how="left", validate="one_to_one")
    out["mark"] = [settings.get("mark", "star") if star is True else "" for star in out["star"]]
    return out


def format_ci(mean: float, low: float, high: float, metric: str) -> str:
    """'12.34 [11.02, 13.50]' in display units (cell mean and its bootstrap CI); 'n/a' without a mean."""
    if not math.isfinite(mean):
        return "n/a"
    scale = METRICS.get(metric, (metric, 1.0, True))[1]
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean * scale:.2f}"
    return f"{mean * scale:.2f} [{low * scale:.2f}, {high * scale:.2f}]"


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def wide(long: pd.DataFrame, best: bool = True, ci: bool = False) -> pd.DataFrame:
    """Display table: rows = table rows, columns = 'dataset · metric', best value per column in bold (**).

    Where the long table carries statistics (:func:`attach_stats`), a best row significantly better than
    every other row is marked as its ``mark`` column says: ``**x***`` (star) or ``**<u>x</u>**`` (underline).
    ``ci=True``: cells show the mean with its bootstrap CI instead of ± std.
    """
    cols, order = {}, []
    for _, r in long.iterrows():
        key = f"{r['dataset_label']} · {METRICS.get(r['metric'], (r['metric'],))[0]}"
        if key not in order:
            order.append(key)
        n_spread = r["n_spread"] if "n_spread" in r and pd.notna(r["n_spread"]) else r["n_folds"]
        cols.setdefault(key, {})[r["row"]] = (r["mean"], r["std"], n_spread, r["metric"],
                                              r.get("note", "") if isinstance(r.get("note", ""), str) else "",
                                              r.get("mark", "") if isinstance(r.get("mark", ""), str) else "",
                                              _float(r.get("ci_low")), _float(r.get("ci_high")))
    rows = list(dict.fromkeys(long["row"]))
    out = pd.DataFrame(index=rows, columns=order, dtype=object)
    for key in order:
        cells = cols[key]
        means = {k: v[0] for k, v in cells.items() if math.isfinite(v[0])}
        winner = None
        if best and len(means) > 1:
            higher = METRICS.get(next(iter(cells.values()))[3], ("", 1, True))[2]
            winner = (max if higher else min)(means, key=means.get)
        for row, (m, s, n, metric, note, mark, lo, hi) in cells.items():
            if note and not math.isfinite(m):
                text = note
            else:
                text = format_ci(m, lo, hi, metric) if ci else format_cell(m, s, n, metric)
            if mark == "underline":
                text = f"<u>{text}</u>"
            text = f"**{text}**" if row == winner else text
            out.loc[row, key] = text + "*" if mark == "star" else text
    out.index.name = "Model"
    return out


def to_markdown(table: pd.DataFrame, title: str) -> str:
    """Markdown with a heading."""
    return f"### {title}\n\n{table.to_markdown()}\n"


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(table: pd.DataFrame, title: str) -> str:
    """A booktabs tabular; bold (**x**) becomes \\textbf{x}, ± becomes $\\pm$."""
    def cell(x):
        x = _tex_escape(str(x)).replace("±", r"$\pm$")
        star = x.startswith("**") and x.endswith("***")
        if star:
            x = x[:-1]
        x = x.replace("<u>", r"\underline{").replace("</u>", "}")
        x = rf"\textbf{{{x[2:-2]}}}" if x.startswith("**") and x.endswith("**") else x
        return x + "$^*$" if star else x

    header = " & ".join([table.index.name or ""] + [cell(c).replace(" · ", r" \\ ") for c in table.columns])
    lines = [rf"% {title}", r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
             header.replace(r" \\ ", " ") + r" \\", r"\midrule"]
    for idx, row in table.iterrows():
        lines.append(" & ".join([cell(idx)] + [cell(v) for v in row]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)
