"""Train a SADM Stage II segmentation Unet on top of the frozen Stage I model of the same fold."""

import torch

from brainuad.training import TrainSettings, fit
from brainuad.training.stage2 import stage1_spec, stage2_data, stage2_hparams
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
p = snakemake.params
train, val = stage2_data(p.data["kind"], snakemake.input.volumes, snakemake.input.splits, snakemake.wildcards.fold)
stage1 = stage1_spec(snakemake.input.stage1, p.stage1["noise_level"])
hparams = stage2_hparams(p.hparams, stage1, p.data["kind"], snakemake.input.stage1)
log.info("Stage II %s on %s data (%s): %d training / %d validation volumes", p.arch, p.data["kind"],
         p.data["dataset"], len(train), len(val))
result = fit(p.arch, hparams, train, val, TrainSettings(**p.settings), out_model=snakemake.output.model,
             out_log=snakemake.output.log, workdir=p.workdir, device=p.device)
log.info("training %s", result)
if result["status"] != "done":
    raise SystemExit(f"training stopped at step {result['step']} (signal); rerun to resume from {p.workdir}")
