"""Re-test the thesis' claims of the config on this run (brainuad.evaluation.claims)."""

from brainuad import paths
from brainuad.evaluation.claims import evaluate_claims
from brainuad.evaluation.stats import read_fold
from brainuad.reporting.tables import METRICS, POOLED
from brainuad.reporting.timing import read_timing
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
eval_dir = paths.eval_dir_lookup(p.datasets)


def load(model, run, fold, dataset, scoring):
    d = eval_dir(model, run, fold, dataset, scoring)
    return read_fold(f"{d}/metrics.tsv", f"{d}/threshold.json")


def load_time(model, run, fold, dataset):
    recon = paths.fill(paths.RECON, trainset=paths.trainset_of(dataset, p.datasets), model=model, run=run, fold=fold,
                       dataset=dataset)
    return read_timing(recon)["seconds_per_volume"]


out = evaluate_claims(p.claims, missing_by_claim=p.missing, load=load, load_time=load_time, folds=p.folds,
                      models=p.models, settings=p.settings, metrics=METRICS, pooled_metrics=POOLED)
out.to_csv(snakemake.output[0], sep="\t", index=False)
log.info("\n%s", out[["claim", "verdict"]].drop_duplicates().to_string(index=False))
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
