"""Assemble results/report/benchmark.pdf from the tables, the figures and the provenance."""

import textwrap
import time
from pathlib import Path

import pandas as pd
import yaml

from brainuad.reporting.pdf import build_report
from brainuad.reporting.tables import wide
from brainuad.reporting.timing import display as timing_display
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
p = snakemake.params
tables = []
for tsv in snakemake.input.tables:  # in the config's table order
    name = Path(tsv).stem
    long = pd.read_csv(tsv, sep="\t")
    spec = p.tables[name]
    note = (f"rows: model · scoring; {long['n_folds'].max()} folds; metrics {', '.join(spec['metrics'])}; "
            f"source: results/tables/{name}.tsv")
    tables.append((spec.get("title", name), wide(long), note))
if snakemake.input.inference:  # seconds per volume measured in the reconstruct jobs
    timing = pd.read_csv(snakemake.input.inference[0], sep="\t", keep_default_na=False)
    spec = p.inference_time
    tables.append((spec.get("title", "Inference time per volume"), timing_display(timing),
                   f"Wall time of the reconstruct jobs divided by the volumes reconstructed (all stored samples and "
                   f"noise levels), mean ± std over datasets and folds; vs reference: relative to "
                   f"{spec.get('reference', '-')}. Source: results/tables/inference_time.tsv"))
figures = []
for fig in snakemake.input.figures:
    name = Path(fig).stem
    if name.startswith("qualitative_"):
        table = name[len("qualitative_"):]
        figures.append((f"Qualitative results: {p.tables[table].get('title', table)}", fig,
                        f"Fold {p.qualitative[table]['fold']}. Per pathology dataset and model: the test subject with the "
                        "largest lesion at its largest lesion slice. Red/cyan contour: ground truth. Anomaly map after "
                        "median filtering and brain-mask erosion; thresholded map at the validation-set threshold after "
                        "removing small components. Last column (Figure 4.3 analogue): intensity densities of input "
                        "(grey) and reconstruction (red, mean of the stored samples) on the healthy brain voxels of the "
                        "whole volume; KLD = H(input) - H(reconstruction) in nats, as P8.3 prints it."))
    elif name == "training_curves":
        figures.append(("Training curves", fig,
                        "Training loss (running mean, thin) and healthy-validation loss (dots) per model and fold; "
                        "the best validation checkpoint is the one evaluated."))
    elif name == "domain_shift":
        figures.append(("Domain shift: intensity histograms (P8.3 §4.5.2, Figure 4.3 analogue)", fig,
                        "Healthy test volumes at simulated contrast levels x^cl (columns) reconstructed by each model "
                        "(rows): intensity density of brain voxels, input (grey) vs reconstruction (red); last column: "
                        "H(input) − H(reconstruction) in nats (P8.3's 'KLD'). Numbers in results/tables/domain_shift.tsv."))
    elif name == "mhd":
        figures.append(("Multi-sample scores (Figure 4.5 analogue)", fig,
                        "Input, mean of N reconstructions, S_mean = 1 - SSIM(x, mean), S_MHD_diag and S_MHD_full "
                        "(Mahalanobis distance with diagonal / full pixel covariance of the N reconstructions, "
                        "min-max, Gaussian sigma 1, times 1 - SSIM), the final post-processed and thresholded "
                        "S_MHD_full map, and the correlation of the marked pixel with every brain pixel from the "
                        "full covariance. Cyan: ground truth."))
    elif name.startswith("sweep_"):
        sw = p.sweeps[name[len("sweep_"):]]
        if "table" in sw:  # a model sweep (rows of a config/sweeps table)
            what = (f"Models {', '.join(sw['models'])}, one run per row of {sw['table']} "
                    f"({', '.join(f'{c} -> {k}' for c, k in sw['set'].items())}), scoring {sw.get('scoring', 'l1')}; "
                    f"dashed: {sw.get('reference_label', 'the configured model') if sw.get('reference') else 'no reference'}.")
        else:
            what = (f"Scoring {sw['scoring']} with {sw['param']} in {sw['values']} for model {sw['model']}; "
                    f"dashed: {sw.get('reference', 'no reference')}.")
        figures.append((sw.get("title", name), fig,
                        f"{what} Mean ± std across folds. Numbers in results/tables/{name}.tsv."))
# ---- Data quality: per dataset the flagged subjects, the excluded subjects and the QC figure
QC_ROWS = 28  # rows per table page; the full tables are in results/qc/<dataset>/


def _short(text, width=100):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _one_column(index, name, values, empty):
    if not len(index):
        index, values = ["-"], [empty]
    return pd.DataFrame({name: values}, index=pd.Index(index, name="subject"))


for qc_tsv, excl_tsv, qc_png in zip(snakemake.input.qc_tables, snakemake.input.qc_exclusions,
                                    snakemake.input.qc_figures):
    ds = Path(qc_tsv).parent.name
    label = p.datasets.get(ds, {}).get("label", ds)
    qc = pd.read_csv(qc_tsv, sep="\t", keep_default_na=False)
    flagged = qc[qc["flagged"].astype(str).str.lower() == "true"] if "flagged" in qc.columns else qc.iloc[:0]
    shown = _one_column([f"{s} ({n})" for s, n in zip(flagged.get("subject", []), flagged.get("n_flags", []))],
                        "reasons", [_short(r) for r in flagged.get("reasons", [])], "no subject flagged")
    note = (f"{len(flagged)} of {len(qc)} pre-processed subjects flagged (number of flags in brackets): robust "
            "outliers of brain volume, intensity percentiles, registration similarity or lesion volume; failed "
            "registration; lesion outside the brain mask; brain cut by the crop. "
            + (f"First {QC_ROWS} shown. " if len(flagged) > QC_ROWS else "") + f"Source: results/qc/{ds}/qc.tsv")
    tables.append((f"Data quality: {label} -- flagged subjects", shown.head(QC_ROWS), textwrap.fill(note, 190)))
    excl = pd.read_csv(excl_tsv, sep="\t", dtype=str, keep_default_na=False)
    reasons = [f"{stage}: " + _short(reason.replace(file, Path(file).name) if file else reason)
               for stage, file, reason in zip(excl["stage"], excl["file"], excl["reason"])]
    listed = _one_column(excl["subject"].tolist(), "excluded at: reason (file name first)", reasons,
                         "no subject excluded")
    note = (f"{len(excl)} subjects left out (manifest: by the data adapter; preprocess: pre-processing failed). "
            + (f"First {QC_ROWS} shown. " if len(excl) > QC_ROWS else "")
            + f"Full paths and reasons: results/qc/{ds}/exclusions.tsv")
    tables.append((f"Data quality: {label} -- excluded subjects", listed.head(QC_ROWS), textwrap.fill(note, 190)))
    figures.append((f"Data quality: {label} -- mid-slices", qc_png,
                    "Axial, coronal and sagittal mid-slices of the pre-processed volumes (flagged subjects first, "
                    "titles in red; red contour: lesion label). Further pages, if any, next to "
                    f"results/qc/{ds}/qc.png."))

build_report(snakemake.output[0], title=p.title, tables=tables, figures=figures,
             config_text=yaml.safe_dump(p.config, sort_keys=False), benchmark_dir=p.benchmarks,
             extra_provenance={"config files": " ".join(str(f) for f in getattr(snakemake, "configfiles", [])) or "-",
                               "report written": time.strftime("%Y-%m-%d %H:%M:%S")})
log.info("report written to %s", Path(snakemake.output[0]).resolve())
