"""P8.1 analyses: slice-wise detection AUPRC (P8.1-Fig6), Dice against lesion size (P8.1-Fig4), l1 bars (Fig4.1)."""

from brainuad.analysis.p81 import run_p81_analysis
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
run_p81_analysis(snakemake.params.entries, table=snakemake.output.table, slicewise_png=snakemake.output.slicewise,
                 size_png=snakemake.output.size, l1_png=snakemake.output.l1)
log.info("P8.1 analyses of %d (row, dataset) entries", len(snakemake.params.entries))
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
