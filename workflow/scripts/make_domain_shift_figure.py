"""Figure 4.3 / P8.3-Fig.4 analogue: healthy-voxel intensity histograms of input vs reconstruction per
model and simulated contrast level, and the entropy shift against the contrast level; plus its table."""

import pandas as pd

from brainuad.reporting.figures import domain_shift_figure
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
n = len(p.labels)
tables = [pd.read_csv(f, sep="\t").assign(model=label) for f, label in zip(snakemake.input.tsv, p.labels)]
table = pd.concat(tables, ignore_index=True)
table.to_csv(snakemake.output.table, sep="\t", index=False)
domain_shift_figure(list(snakemake.input.hist), p.labels, table, snakemake.output.figure)
log.info("\n%s", table.to_string())
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
