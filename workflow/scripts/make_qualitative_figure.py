"""Qualitative figure of one table (Figure 4.3 analogue): one row per pathology dataset x model."""

from brainuad.reporting.example_figures import write_qualitative_figure
from brainuad.reporting.tables import configured_rows
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
n = write_qualitative_figure(snakemake.output[0], configured_rows(p.table, p.models), p.spec["fold"], options=p.options, models=p.models,
                             datasets=p.datasets, run=p.run, histogram_bins=p.histogram_bins,
                             conventions=p.conventions)
log.info("%d qualitative panels for table %s", n, snakemake.wildcards.table)
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
