"""Train one model on the healthy training split of one fold (rule train), or of every fold the run needs (the
per-model rules of config ``jobs.train: per_model``, params.jobs)."""

import torch

from brainuad.training.jobs import stopped, train_jobs
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
params, wc = snakemake.params, snakemake.wildcards
# settings: train.fraction = seeded subset of the training subjects (P8.1-Fig5); encoder: SSL-pretrained cDDPM
# encoder from the pretrain_encoder rule
jobs = params.jobs if hasattr(params, "jobs") else [
    {"fold": int(wc.fold), "settings": params.settings, "volumes": snakemake.input.volumes,
     "splits": snakemake.input.splits, "encoder": snakemake.input.get("encoder"), "model": snakemake.output.model,
     "log": snakemake.output.log, "workdir": params.workdir}]
message = stopped(train_jobs(jobs, arch=params.arch, hparams=params.hparams, device=params.device, log=log))
if message:
    raise SystemExit(message)
exit_now()  # skip the interpreter's teardown of torch (brainuad.utils.exit_now)
