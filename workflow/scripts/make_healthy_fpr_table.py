"""Healthy-FPR thresholds applied to the pathology sets of one segmentation table's rows: long TSV and Markdown."""

from pathlib import Path

from brainuad.paths import eval_dir_lookup
from brainuad.reporting.detection import fpr_long, fpr_wide, to_markdown
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p, out = snakemake.params, snakemake.output
eval_dir = eval_dir_lookup(p.datasets)


def fpr_file(*key):
    return Path(eval_dir(*key)) / "fpr.tsv"


long = fpr_long(p.spec, fpr_file, p.folds, p.models, p.datasets, default_run=p.run)
long.to_csv(out.tsv, sep="\t", index=False)
tables = {label: fpr_wide(long, label) for label in dict.fromkeys(long["dataset_label"])}
Path(out.md).write_text(to_markdown(tables, f"Healthy-FPR thresholds applied: {p.spec.get('title', snakemake.wildcards.table)}"))
log.info("\n%s", "\n".join(t.to_string() for t in tables.values()))
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
