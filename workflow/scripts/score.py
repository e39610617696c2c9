"""Turn stored reconstructions into anomaly maps: one scoring of one dataset (rule score) or every fold, dataset
and scoring of one model (the per-model rules of config ``jobs.score: per_model``, params.jobs)."""

from brainuad.scoring.stored import score_stored_jobs
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
params = snakemake.params
jobs = params.jobs if hasattr(params, "jobs") else [
    {"scoring": params.scoring, "recon": snakemake.input.recon, "volumes": snakemake.input.volumes,
     "output": snakemake.output[0]}]
score_stored_jobs(jobs, log=log)
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
