"""Self-supervised masked-image-modelling pre-training of a cDDPM encoder on the fold's healthy training split
(rule pretrain_encoder), or on every fold the run needs (the per-model rules of config ``jobs.train: per_model``)."""

import torch

from brainuad.training.jobs import pretrain_jobs, stopped
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
params, wc = snakemake.params, snakemake.wildcards
jobs = params.jobs if hasattr(params, "jobs") else [
    {"fold": int(wc.fold), "settings": params.settings, "volumes": snakemake.input.volumes,
     "splits": snakemake.input.splits, "encoder": snakemake.output.encoder, "log": snakemake.output.log,
     "workdir": params.workdir}]  # workdir: resumable state, like train's
message = stopped(pretrain_jobs(jobs, arch=params.arch, hparams=params.hparams, device=params.device, log=log))
if message:
    raise SystemExit(message)
exit_now()  # skip the interpreter's teardown of torch (brainuad.utils.exit_now)
