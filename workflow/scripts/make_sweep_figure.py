"""One sweep: metrics against the swept value, as a figure and its table (brainuad.reporting.sweeps)."""

from brainuad.reporting.sweeps import write_sweep
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
table = write_sweep(snakemake.output.figure, snakemake.output.table, p.kind, p.sweep, ids=p.ids, points=p.points,
                    folds=p.folds, models=p.models, datasets=p.datasets, run=p.run, protocol=p.protocol)
log.info("\n%s", table.to_string())
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
