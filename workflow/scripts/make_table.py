"""Aggregate one configured table, add its tests and CIs, and write it as TSV (long, numeric), Markdown and LaTeX."""

from pathlib import Path

import pandas as pd

from brainuad.reporting.tables import aggregate, attach_stats, backbone_note, to_latex, to_markdown, wide
from brainuad.paths import eval_dir_lookup
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
datasets = p.datasets


eval_dir = eval_dir_lookup(datasets)

long = aggregate(p.spec, eval_dir, p.folds, p.models, datasets, default_run=p.run)
long = attach_stats(long, pd.read_csv(snakemake.input.stats, sep="\t"), p.settings)
long.to_csv(snakemake.output.tsv, sep="\t", index=False)
table = wide(long)
title = p.spec.get("title", snakemake.wildcards.table)
note = backbone_note(long).strip()  # which backbone each feature-based row used (or "not configured")
Path(snakemake.output.md).write_text(to_markdown(table, title) + (f"\n{note}\n" if note else ""))
Path(snakemake.output.tex).write_text(to_latex(table, title))
log.info("\n%s", table.to_string())
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
