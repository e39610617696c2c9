"""Train one model on the healthy training split of one fold."""

import torch

from brainuad.data.pack import fold_volumes
from brainuad.models import model_class
from brainuad.training import TrainSettings, fit
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
settings = dict(snakemake.params.settings)  # train.fraction: seeded subset of the training subjects (P8.1-Fig5)
train, val = fold_volumes(snakemake.input.volumes, snakemake.input.splits, snakemake.wildcards.fold,
                          fraction=settings.pop("fraction", 1.0), seed=settings["seed"])
hparams = dict(snakemake.params.hparams)
# slice models get (H, W), volume models (D, H, W) of the packed volumes (N, D, H, W)
hparams.setdefault("image_size", list(train.shape[-model_class(snakemake.params.arch).input_dims:]))
if "encoder" in snakemake.input.keys():  # SSL-pretrained cDDPM encoder from the pretrain_encoder rule
    hparams["pretrained_encoder"] = str(snakemake.input.encoder)
result = fit(snakemake.params.arch, hparams, train, val, TrainSettings(**settings),
             out_model=snakemake.output.model, out_log=snakemake.output.log, workdir=snakemake.params.workdir,
             device=snakemake.params.device)
log.info("training %s", result)
if result["status"] != "done":
    raise SystemExit(f"training stopped at step {result['step']} (signal); rerun to resume from {snakemake.params.workdir}")
