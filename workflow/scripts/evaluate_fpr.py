"""Apply the healthy-FPR thresholds of one (model, fold, scoring) to a pathology dataset's maps (rules
evaluate_fpr, evaluate_fpr_protocol; the per-model rules of config ``jobs.evaluate`` run these in evaluate.py)."""

from brainuad.evaluation.protocol import evaluate_stored_jobs
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p, inp = snakemake.params, snakemake.input
evaluate_stored_jobs([{"kind": "fpr", "options": p.options, "conventions": p.conventions, "scores": inp.scores,
                       "volumes": inp.volumes, "healthy": inp.healthy, "output": snakemake.output[0]}], log=log)
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
