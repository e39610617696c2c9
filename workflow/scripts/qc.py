"""Quality control of one dataset: per-subject QC table with outlier flags, a mid-slice figure and the
table of every subject left out (by the adapter when the manifest was built, or by the preprocess rule)."""

from brainuad.data.qc import write_dataset_qc
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
i, o = snakemake.input, snakemake.output
table, flagged, excluded, written = write_dataset_qc(
    snakemake.wildcards.dataset, snakemake.params.label, records=i.qc, scan_exclusions=i.exclusions,
    volumes=i.volumes, table=o.table, exclusions=o.exclusions, figure=o.figure,
    flags=snakemake.params.flags)
log.info("%d subjects, %d flagged: %s", len(table), len(flagged), flagged)
log.info("%d subjects excluded", len(excluded))
log.info("figure pages %s", [str(p) for p in written])
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
