"""Apply the healthy-FPR thresholds of one (model, fold, scoring) to a pathology dataset's maps."""

from brainuad.evaluation.protocol import apply_fpr_stored
from brainuad.utils import log_to, write_tsv

log = log_to(snakemake.log[0])
p = snakemake.params
rows = apply_fpr_stored(p.options, snakemake.input.scores, snakemake.input.volumes, snakemake.input.healthy,
                        conventions=p.conventions)
write_tsv(rows, snakemake.output[0])
log.info("%d rows (subject x target FPR)", len(rows))
