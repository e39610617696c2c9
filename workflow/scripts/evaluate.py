"""Post-process, threshold and measure one (model, fold, dataset, scoring) (rules evaluate, evaluate_protocol), or
every evaluation and healthy-FPR evaluation of one model (the per-model rules of config ``jobs.evaluate:
per_model``, params.jobs)."""

from brainuad.evaluation.protocol import evaluate_stored_jobs
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p, inp, out = snakemake.params, snakemake.input, snakemake.output
jobs = p.jobs if hasattr(p, "jobs") else [
    {"kind": "evaluate", "role": p.role, "options": p.options, "samples": p.samples, "conventions": p.conventions,
     "scores": inp.scores, "recon": inp.recon, "volumes": inp.volumes, "threshold": out.threshold,
     "metrics": out.metrics}]
evaluate_stored_jobs(jobs, log=log)
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
