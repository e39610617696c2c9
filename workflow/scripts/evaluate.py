"""Post-process, threshold and measure one (model, fold, dataset, scoring)."""

import pandas as pd

from brainuad.evaluation.protocol import evaluate_stored
from brainuad.utils import log_to, write_json

log = log_to(snakemake.log[0])
p = snakemake.params
summary, rows = evaluate_stored(p.role, p.options, snakemake.input.scores, snakemake.input.recon,
                                snakemake.input.volumes, samples=p.samples, conventions=p.conventions)
write_json(summary, snakemake.output.threshold)
pd.DataFrame(rows).to_csv(snakemake.output.metrics, sep="\t", index=False)
log.info("summary %s", summary)
