"""Assemble results/report/benchmark.pdf from the tables, the figures and the provenance."""

import time
from pathlib import Path

import pandas as pd
import yaml

from brainuad.reporting.pdf import build_report
from brainuad.reporting.tables import wide
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
figures = [
    ("Qualitative results", snakemake.input.figures[0],
     "Per pathology dataset and model (fold shown in the config): the test subject with the largest lesion at its "
     "largest lesion slice. Red/cyan contour: ground truth. Anomaly map after median filtering and brain-mask "
     "erosion; thresholded map at the validation-set threshold after removing small components."),
    ("Training curves", snakemake.input.figures[1],
     "Training loss (running mean, thin) and healthy-validation loss (dots) per model and fold; the best "
     "validation checkpoint is the one evaluated."),
]
for fig in snakemake.input.figures[2:]:
    name = Path(fig).stem
    if name == "mhd":
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
build_report(snakemake.output[0], title=p.title, tables=tables, figures=figures,
             config_text=yaml.safe_dump(p.config, sort_keys=False), benchmark_dir=p.benchmarks,
             extra_provenance={"config files": " ".join(str(f) for f in getattr(snakemake, "configfiles", [])) or "-",
                               "report written": time.strftime("%Y-%m-%d %H:%M:%S")})
log.info("report written to %s", Path(snakemake.output[0]).resolve())
