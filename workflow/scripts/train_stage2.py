"""Train a SADM Stage II segmentation Unet on top of the frozen Stage I model of the same fold (rule train_stage2),
or of every fold the run needs (the per-model rules of config ``jobs.train: per_model``, params.jobs)."""

import torch

from brainuad.training.jobs import stopped, train_stage2_jobs
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
params, wc = snakemake.params, snakemake.wildcards
jobs = params.jobs if hasattr(params, "jobs") else [
    {"fold": int(wc.fold), "settings": params.settings, "stage1": snakemake.input.stage1,
     "volumes": snakemake.input.volumes, "splits": snakemake.input.splits, "model": snakemake.output.model,
     "log": snakemake.output.log, "workdir": params.workdir}]
message = stopped(train_stage2_jobs(jobs, arch=params.arch, hparams=params.hparams, stage1=params.stage1,
                                    data=params.data, device=params.device, log=log))
if message:
    raise SystemExit(message)
exit_now()  # skip the interpreter's teardown of torch (brainuad.utils.exit_now)
