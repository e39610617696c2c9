"""Reconstruct (or map) the evaluation volumes of one dataset (rule reconstruct) or of every fold and dataset
of one model (the per-model rules of config ``jobs.reconstruct: per_model``, params.jobs) with the trained model."""

import torch

from brainuad.inference import reconstruct_jobs
from brainuad.training import resolve_device
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
params, wc = snakemake.params, snakemake.wildcards
jobs = params.jobs if hasattr(params, "jobs") else [
    {"fold": int(wc.fold), "role": params.role, "model_file": snakemake.input.model or None,
     "volumes": snakemake.input.volumes, "splits": snakemake.input.splits, "output": snakemake.output[0]}]
reconstruct_jobs(jobs, arch=params.arch, hparams=params.hparams, settings=params.settings, seed=params.seed,
                 device=resolve_device(params.device), log=log)
exit_now()  # skip the interpreter's teardown of torch (brainuad.utils.exit_now)
