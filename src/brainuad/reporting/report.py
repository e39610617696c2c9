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
from .detection import healthy_fpr_pages, lesionwise_pages
from .tables import METRICS, backbone_note, row_scoring, wide
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


#: a table gets a "± CI" page when it has at most this many columns (wider ones: CIs in the TSV only)
CI_PAGE_COLUMNS = 6
#: characters per line of a table note
NOTE_WIDTH = 200


def stats_note(long: pd.DataFrame) -> str:
    """What the marks of a table mean and which test made them ('' for a table without statistics)."""
    if "test" not in long.columns or not long["test"].notna().any():
        return ""
    mark = next((m for m in long.get("mark", pd.Series(dtype=str)).fillna("") if m), "")
    how = {"star": "*", "underline": "underlined", "": "* (star) or underline"}[mark]
    return (f" {how} = the best row is significantly better than every other row in that column; test: "
            f"{long['test'].dropna().iloc[0]}. p-values and 95 % bootstrap CIs over subjects are in the table's TSV.")


def result_table(tsv: str | Path, spec: dict, captions: dict,
                 datasets: dict | None = None) -> tuple[str, pd.DataFrame, str]:
    """(title, display table, note) of one configured table from its long TSV; the ``note`` of every dataset of
    the table (config ``datasets.<name>.note``) is appended to the table's note."""
    name = Path(tsv).stem
    long = pd.read_csv(tsv, sep="\t")
    note = captions["table"].format(n_folds=long["n_folds"].max(), metrics=", ".join(spec["metrics"]), name=name)
    for ds in spec.get("datasets", []):
        entry = (datasets or {}).get(ds, {})
        if entry.get("note"):
            note += f" {entry.get('label', ds)}: {entry['note']}"
    return spec.get("title", name), wide(long), textwrap.fill(note + stats_note(long) + backbone_note(long), NOTE_WIDTH)


def ci_table(tsv: str | Path, spec: dict) -> tuple[str, pd.DataFrame, str] | None:
    """The "± CI" variant of a table (mean [95 % bootstrap CI over subjects]); None when the table is too wide
    or has no CIs."""
    long = pd.read_csv(tsv, sep="\t")
    table = wide(long, ci=True)
    if "ci_low" not in long.columns or len(table.columns) > CI_PAGE_COLUMNS:
        return None
    name = Path(tsv).stem
    note = ("Cells: mean over folds [95 % percentile bootstrap CI of the mean over test subjects (over folds for "
            "dataset-level metrics)]; same units and marks as the table." + stats_note(long))
    return f"{spec.get('title', name)} (± 95 % CI)", table, textwrap.fill(note, NOTE_WIDTH)


def published_table(tsv: str | Path, spec: dict, published_tsv: str | Path,
                    datasets: dict) -> tuple[str, pd.DataFrame, str]:
    """(title, reproduced vs published cells, note) of a table that declares ``published``."""
    from brainuad.evaluation.published import display, read_published, side_by_side

    long = pd.read_csv(tsv, sep="\t")
    sbs = side_by_side(long, spec["published"], read_published(published_tsv), METRICS)
    shown = display(sbs, METRICS, datasets) if len(sbs) else one_column([], "cell", [], "no mapped cell")
    name = Path(tsv).stem
    note = (f"Reproduced cell (mean over folds, [95 % bootstrap CI over subjects]) beside the published one "
            f"({Path(published_tsv).name}); difference = reproduced - published in display units; 'outside CI' "
            f"flags a published mean outside the reproduced CI. {int(sbs['outside_ci'].sum()) if len(sbs) else 0} "
            f"of {len(sbs)} cells outside.")
    return f"Published vs reproduced: {spec.get('title', name)}", shown.head(QC_ROWS), textwrap.fill(note, NOTE_WIDTH)


def claims_table(tsv: str | Path) -> tuple[str, pd.DataFrame, str]:
    """(title, one line per thesis claim, note) of the claims page."""
    from brainuad.evaluation.claims import summary

    long = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    shown = summary(long)
    for col in ("claim", "source", "test", "measured", "verdict"):  # six equal columns of about 30 characters
        shown[col] = [textwrap.fill(str(v), 30) for v in shown[col]]
    tested = long[long["p"].astype(str) != ""]
    test = tested["test"].iloc[0] if len(tested) else "-"
    note = ("Each claim is re-tested as one-sided comparisons 'A > B' (every listed pair and dataset); measured = "
            "mean difference A - B in display units (range over the comparisons; time: relative change of "
            "seconds per volume), p = the largest p-value of the claim. Reproduced = every comparison significant. "
            f"Test: {test}. One line per comparison: {Path(tsv).name}.")
    return "Thesis claims re-tested", shown.set_index("claim"), textwrap.fill(note, NOTE_WIDTH)


def heldout_table(splits_files, datasets: dict) -> tuple[str, pd.DataFrame, str]:
    """(title, one line per pathology set and use, note) of the SADM held-out subjects page: the subjects
    whose labels train Stage II (block III) and those that calibrate thresholds, none of them in a test split."""
    import json

    lines = []
    for path in splits_files:
        ds = Path(path).stem
        splits = json.loads(Path(path).read_text())
        label = datasets.get(ds, {}).get("label", ds)
        for key, use in (("train", "SADM Stage II training (labels)"), ("val", "threshold calibration")):
            subjects = splits.get(key, [])
            lines.append({"dataset": label, "use": use, "n": len(subjects),
                          "subjects": textwrap.fill(", ".join(subjects), 70)})
        lines.append({"dataset": label, "use": "test (every model)", "n": len(splits.get("test", [])), "subjects": "-"})
    note = ("Subjects used to train SADM Stage II (block III) or to calibrate thresholds are removed from the test split "
            "of their data set for every model of every table. Stage II selects its checkpoint on its own training "
            "subjects: unlike the public code (which selects the Stage II checkpoint on the validation subjects that it "
            "later also uses for the threshold search), no calibration or test subject is seen in training or model "
            "selection.")
    return ("SADM Stage II: held-out subjects", pd.DataFrame(lines).set_index("dataset"),
            textwrap.fill(note, NOTE_WIDTH))


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
            dashed=dashed, name=f"sweep_{name}",
            folds=f"fold{'s' if len(sweep['folds']) > 1 else ''} {', '.join(map(str, sweep['folds']))}"
            if sweep.get("folds") else "folds")
    return captions["sweep_scoring"].format(scoring=sweep["scoring"], param=sweep["param"], values=sweep["values"],
                                            model=sweep["model"], dashed=sweep.get("reference", "no reference"),
                                            name=f"sweep_{name}")


def figure_page(image: str | Path, captions: dict, *, tables: dict, qualitative: dict,
                sweeps: dict, lesion_overlap: str = "any") -> tuple[str, str | Path, str]:
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
    if name == "p81_l1":
        return "Mean l1 error on healthy and lesion voxels (Figure 4.1 analogue)", image, captions["p81_l1"]
    if name == "p81_lesion_size":
        return "Subject-wise Dice against lesion size (P8.1-Fig4 analogue)", image, captions["p81_lesion_size"]
    if name.startswith("lesionwise_"):
        table = name[len("lesionwise_"):]
        return (f"Lesion-wise detection by lesion size: {tables[table].get('title', table)}", image,
                captions["lesionwise"].format(overlap=lesion_overlap))
    if name.startswith("sweep_"):
        sweep = sweeps[name[len("sweep_"):]]
        return sweep.get("title", name), image, sweep_caption(name[len("sweep_"):], sweep, captions)
    raise ValueError(f"{image}: no report page for a figure named {name!r}")


def qc_pages(qc_tsv: str | Path, exclusions_tsv: str | Path, qc_png: str | Path, label: str,
             captions: dict, qc_settings: dict | None = None) -> tuple[list[tuple], list[tuple]]:
    """Data-quality pages of one dataset.

    ``qc_settings``: config ``qc`` (the flag rules named in the note; :func:`brainuad.data.qc.qc_table` defaults).

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
    settings = {"max_crop_removed_fraction": 0.01, "mad_threshold": 3.5, **(qc_settings or {})}
    note = captions["qc_flagged"].format(n_flagged=len(flagged), n_subjects=len(qc), dataset=ds,
                                         first_shown=_first_shown(len(flagged)),
                                         crop_fraction=f"{settings['max_crop_removed_fraction']:.1%}",
                                         mad_threshold=f"{settings['mad_threshold']:g}")
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


def conventions_lines(preset: str, conventions) -> list[str]:
    """The provenance page's block on the conventions in force: the preset, then one line per switch with
    its value and where it comes from (the preset or the config)."""
    if not conventions:
        return []
    lines = [f"Conventions (config 'conventions', config/README.md): preset {preset}"]
    lines += [f"  {key:<20}{value:<16}({origin})" for key, value, origin in conventions]
    return lines


def _first_shown(n: int) -> str:
    return f"First {QC_ROWS} shown. " if n > QC_ROWS else ""


def write_report(path: str | Path, *, captions, tables, inference, figures, qc_tables, qc_exclusions, qc_figures,
                 table_specs: dict, qualitative: dict, inference_time: dict, sweeps: dict, datasets: dict,
                 title: str, config: dict, benchmarks: str | Path, configfiles=(), preset: str = "-",
                 conventions=(), published=(), claims=(), heldout=(), lesionwise=(), healthy_fpr=(),
                 lesion_overlap: float = 0.0) -> None:
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
    preset : the conventions preset in force (config ``conventions.preset``)
    conventions : ``(switch, value, where from)`` of every convention in force
        (:meth:`brainuad.study.Study.conventions_provenance`), listed on the provenance page
    published : config/published/*.tsv files the tables declare
    claims : [] or [the claims TSV]
    lesionwise, healthy_fpr : long TSVs of the lesion-wise and healthy-FPR tables (report.lesionwise / healthy_fpr)
    lesion_overlap : evaluation.lesions.overlap (the detection rule in the captions)
    heldout : splits files of the pathology sets with SADM Stage II training subjects (listed on one page)
    """
    caps = read_captions(captions)
    table_pages = []
    published_by_name = {Path(p).stem: p for p in published}
    for tsv in tables:
        spec = table_specs[Path(tsv).stem]
        table_pages.append(result_table(tsv, spec, caps, datasets))
        ci_page = ci_table(tsv, spec)
        if ci_page:
            table_pages.append(ci_page)
        if spec.get("published"):
            table_pages.append(published_table(tsv, spec, published_by_name[spec["published"]["table"]], datasets))
    if claims:
        table_pages.append(claims_table(claims[0]))
    if heldout:
        table_pages.append(heldout_table(heldout, datasets))
    if inference:
        table_pages.append(inference_table(inference[0], inference_time, caps))
    overlap = f"{lesion_overlap:.0%}" if lesion_overlap else "any"
    for tsv in lesionwise:
        spec = table_specs[Path(tsv).stem[len("lesionwise_"):]]
        table_pages += lesionwise_pages(tsv, spec, textwrap.fill(caps["lesionwise"].format(overlap=overlap), NOTE_WIDTH))
    for tsv in healthy_fpr:
        spec = table_specs[Path(tsv).stem[len("healthy_fpr_"):]]
        table_pages += [(title, table, textwrap.fill(note, NOTE_WIDTH))
                        for title, table, note in healthy_fpr_pages(tsv, spec, caps["healthy_fpr"])]
    figure_pages = [figure_page(fig, caps, tables=table_specs, qualitative=qualitative, sweeps=sweeps,
                                lesion_overlap=overlap) for fig in figures]
    for qc_tsv, excl_tsv, qc_png in zip(qc_tables, qc_exclusions, qc_figures):
        ds = Path(qc_tsv).parent.name
        more_tables, more_figures = qc_pages(qc_tsv, excl_tsv, qc_png, datasets.get(ds, {}).get("label", ds), caps,
                                             config.get("qc"))
        table_pages += more_tables
        figure_pages += more_figures
    build_report(path, title=title, tables=table_pages, figures=figure_pages,
                 config_text=yaml.safe_dump(config, sort_keys=False), benchmark_dir=benchmarks,
                 conventions_lines=conventions_lines(preset, conventions),
                 extra_provenance={"config files": " ".join(str(f) for f in configfiles) or "-",
                                   "report written": time.strftime("%Y-%m-%d %H:%M:%S")})
