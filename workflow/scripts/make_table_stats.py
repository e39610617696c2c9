"""Permutation tests and bootstrap CIs of one configured table (brainuad.evaluation.stats)."""

from brainuad.evaluation.stats import read_fold, table_stats
from brainuad.paths import eval_dir_lookup
from brainuad.reporting.tables import METRICS, POOLED, configured_rows
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
eval_dir = eval_dir_lookup(p.datasets)


def load(model, run, fold, dataset, scoring, protocol="default"):
    d = eval_dir(model, run, fold, dataset, scoring, protocol)
    return read_fold(f"{d}/metrics.tsv", f"{d}/threshold.json")


out = table_stats(configured_rows(p.spec, p.models), load, p.folds, p.models, p.datasets, p.settings, METRICS, POOLED, default_run=p.run)
out.to_csv(snakemake.output[0], sep="\t", index=False)
log.info("%d cells tested: %s", len(out), out["test"].iloc[0] if len(out) else "-")
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
