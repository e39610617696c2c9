"""Post-process, threshold and measure one (model, fold, dataset, scoring)."""

from brainuad.evaluation.protocol import evaluate_stored
from brainuad.utils import log_to, write_json, write_tsv

log = log_to(snakemake.log[0])
p = snakemake.params
summary, rows = evaluate_stored(p.role, p.options, snakemake.input.scores, snakemake.input.recon,
                                snakemake.input.volumes, samples=p.samples, conventions=p.conventions)
write_json(summary, snakemake.output.threshold)
write_tsv(rows, snakemake.output.metrics)  # numpy/scipy only: no pandas, sklearn or torch in this job
log.info("summary %s", summary)
