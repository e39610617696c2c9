"""The benchmark report: the result tables, the figures and the data-quality pages with their captions.

Captions live in ``workflow/report/<kind>.rst`` (one file per table / figure kind, the files
``snakemake --report`` reads too); a caption is one paragraph whose ``{field}`` placeholders
(:meth:`str.format`) are filled here. :func:`write_report` assembles everything and writes the PDF with
:func:`brainuad.reporting.pdf.build_report`.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pandas as pd
import yaml

from .pdf import build_report
from .tables import row_scoring, wide
from .timing import display as timing_display

QC_ROWS = 28
"""Rows per data-quality table page; the full tables are in results/qc/<dataset>/."""

QC_NOTE_WIDTH = 190
"""Characters per line of a data-quality note."""


def read_captions(paths) -> dict[str, str]:
    """Caption templates by kind (file stem), each file's whitespace collapsed to single spaces."""
    return {Path(p).stem: " ".join(Path(p).read_text(encoding="utf-8").split()) for p in paths}


def short(text, width: int = 100) -> str:
    """``text`` on one line, cut to ``width`` characters with "..." when longer."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def one_column(index, name: str, values, empty: str) -> pd.DataFrame:
    """A one-column table indexed by subject; a single "-" row saying ``empty`` when there is none."""
    if not len(index):
        index, values = ["-"], [empty]
    return pd.DataFrame({name: values}, index=pd.Index(index, name="subject"))


def result_table(tsv: str | Path, spec: dict, captions: dict) -> tuple[str, pd.DataFrame, str]:
    """(title, display table, note) of one configured table from its long TSV."""
    name = Path(tsv).stem
    long = pd.read_csv(tsv, sep="\t")
    note = captions["table"].format(n_folds=long["n_folds"].max(), metrics=", ".join(spec["metrics"]), name=name)
    return spec.get("title", name), wide(long), note


def inference_table(tsv: str | Path, spec: dict, captions: dict) -> tuple[str, pd.DataFrame, str]:
    """(title, display table, note) of the inference-time table."""
    timing = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    return (spec.get("title", "Inference time per volume"), timing_display(timing),
            captions["inference_time"].format(reference=spec.get("reference", "-")))


def sweep_caption(name: str, sweep: dict, captions: dict) -> str:
    """Caption of the figure ``sweep_<name>``: a model sweep (it has a ``table``) or a scoring sweep."""
    if "table" in sweep:
        dashed = sweep.get("reference_label", "the configured model") if sweep.get("reference") else "no reference"
        return captions["sweep_model"].format(
            models=", ".join(sweep["models"]), table=sweep["table"],
            settings=", ".join(f"{c} -> {k}" for c, k in sweep["set"].items()), scoring=row_scoring(sweep),
            dashed=dashed, name=f"sweep_{name}")
    return captions["sweep_scoring"].format(scoring=sweep["scoring"], param=sweep["param"], values=sweep["values"],
                                            model=sweep["model"], dashed=sweep.get("reference", "no reference"),
                                            name=f"sweep_{name}")


def figure_page(image: str | Path, captions: dict, *, tables: dict, qualitative: dict,
                sweeps: dict) -> tuple[str, str | Path, str]:
    """(title, image, caption) of one figure, by its file name (``qualitative_<table>``, ``training_curves``,
    ``domain_shift``, ``mhd``, ``sweep_<sweep>``)."""
    name = Path(image).stem
    if name.startswith("qualitative_"):
        table = name[len("qualitative_"):]
        return (f"Qualitative results: {tables[table].get('title', table)}", image,
                captions["qualitative"].format(fold=qualitative[table]["fold"]))
    if name == "training_curves":
        return "Training curves", image, captions["training_curves"]
    if name == "domain_shift":
        return ("Domain shift: intensity histograms (P8.3 §4.5.2, Figure 4.3 analogue)", image,
                captions["domain_shift"])
    if name == "mhd":
        return "Multi-sample scores (Figure 4.5 analogue)", image, captions["mhd"]
    if name == "p81_slicewise":
        return "Slice-wise anomaly detection (P8.1-Fig6 analogue)", image, captions["p81_slicewise"]
    if name == "p81_lesion_size":
        return "Subject-wise Dice against lesion size (P8.1-Fig4 analogue)", image, captions["p81_lesion_size"]
    if name.startswith("sweep_"):
        sweep = sweeps[name[len("sweep_"):]]
        return sweep.get("title", name), image, sweep_caption(name[len("sweep_"):], sweep, captions)
    raise ValueError(f"{image}: no report page for a figure named {name!r}")


def qc_pages(qc_tsv: str | Path, exclusions_tsv: str | Path, qc_png: str | Path, label: str,
             captions: dict) -> tuple[list[tuple], list[tuple]]:
    """Data-quality pages of one dataset.

    Returns
    -------
    tables : [(title, flagged subjects, note), (title, excluded subjects, note)]
    figures : [(title, mid-slice figure, caption)]
    """
    ds = Path(qc_tsv).parent.name
    qc = pd.read_csv(qc_tsv, sep="\t", keep_default_na=False)
    flagged = qc[qc["flagged"].astype(str).str.lower() == "true"] if "flagged" in qc.columns else qc.iloc[:0]
    shown = one_column([f"{s} ({n})" for s, n in zip(flagged.get("subject", []), flagged.get("n_flags", []))],
                       "reasons", [short(r) for r in flagged.get("reasons", [])], "no subject flagged")
    note = captions["qc_flagged"].format(n_flagged=len(flagged), n_subjects=len(qc), dataset=ds,
                                         first_shown=_first_shown(len(flagged)))
    excl = pd.read_csv(exclusions_tsv, sep="\t", dtype=str, keep_default_na=False)
    reasons = [f"{stage}: " + short(reason.replace(file, Path(file).name) if file else reason)
               for stage, file, reason in zip(excl["stage"], excl["file"], excl["reason"])]
    listed = one_column(excl["subject"].tolist(), "excluded at: reason (file name first)", reasons,
                        "no subject excluded")
    excl_note = captions["qc_excluded"].format(n_excluded=len(excl), dataset=ds, first_shown=_first_shown(len(excl)))
    tables = [(f"Data quality: {label} -- flagged subjects", shown.head(QC_ROWS), textwrap.fill(note, QC_NOTE_WIDTH)),
              (f"Data quality: {label} -- excluded subjects", listed.head(QC_ROWS),
               textwrap.fill(excl_note, QC_NOTE_WIDTH))]
    figures = [(f"Data quality: {label} -- mid-slices", qc_png, captions["qc_slices"].format(dataset=ds))]
    return tables, figures


def _first_shown(n: int) -> str:
    return f"First {QC_ROWS} shown. " if n > QC_ROWS else ""


def write_report(path: str | Path, *, captions, tables, inference, figures, qc_tables, qc_exclusions, qc_figures,
                 table_specs: dict, qualitative: dict, inference_time: dict, sweeps: dict, datasets: dict,
                 title: str, config: dict, benchmarks: str | Path, configfiles=()) -> None:
    """Write results/report/benchmark.pdf.

    Parameters
    ----------
    path : output PDF
    captions : the ``workflow/report/*.rst`` caption files
    tables : long TSV per configured table, in the config's order
    inference : [] or [the inference-time TSV]
    figures : figure files (see :func:`figure_page`)
    qc_tables, qc_exclusions, qc_figures : per dataset, qc.tsv, exclusions.tsv and qc.png
    table_specs, qualitative, inference_time, sweeps, datasets : the config sections
    title : report title
    config : the run's configuration (printed on the last pages)
    benchmarks : folder of the Snakemake benchmark files
    configfiles : the config files of the run (provenance)
    """
    caps = read_captions(captions)
    table_pages = [result_table(tsv, table_specs[Path(tsv).stem], caps) for tsv in tables]
    if inference:
        table_pages.append(inference_table(inference[0], inference_time, caps))
    figure_pages = [figure_page(fig, caps, tables=table_specs, qualitative=qualitative, sweeps=sweeps)
                    for fig in figures]
    for qc_tsv, excl_tsv, qc_png in zip(qc_tables, qc_exclusions, qc_figures):
        ds = Path(qc_tsv).parent.name
        more_tables, more_figures = qc_pages(qc_tsv, excl_tsv, qc_png, datasets.get(ds, {}).get("label", ds), caps)
        table_pages += more_tables
        figure_pages += more_figures
    build_report(path, title=title, tables=table_pages, figures=figure_pages,
                 config_text=yaml.safe_dump(config, sort_keys=False), benchmark_dir=benchmarks,
                 extra_provenance={"config files": " ".join(str(f) for f in configfiles) or "-",
                                   "report written": time.strftime("%Y-%m-%d %H:%M:%S")})
