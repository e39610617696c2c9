"""Lesion-wise detection of one segmentation table's rows: long TSV, Markdown and the figure."""

from pathlib import Path

from brainuad.paths import eval_dir_lookup
from brainuad.reporting.detection import lesion_figure, lesion_long, lesion_wide, to_markdown
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p, out = snakemake.params, snakemake.output
long = lesion_long(p.spec, eval_dir_lookup(p.datasets), p.folds, p.models, p.datasets, p.strata, default_run=p.run)
long.to_csv(out.tsv, sep="\t", index=False)
tables = {"Lesion sensitivity (%)": lesion_wide(long, "lesion_sensitivity"),
          "False-positive components per volume": lesion_wide(long, "fp_components")}
Path(out.md).write_text(to_markdown(tables, f"Lesion-wise detection: {p.spec.get('title', snakemake.wildcards.table)}"))
lesion_figure(long, out.figure)
log.info("\n%s", "\n".join(t.to_string() for t in tables.values()))
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
