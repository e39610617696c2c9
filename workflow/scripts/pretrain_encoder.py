"""Self-supervised masked-image-modelling pre-training of a cDDPM encoder on the fold's healthy training split."""

import torch

from brainuad.data.pack import fold_volumes
from brainuad.models import model_class
from brainuad.training.pretrain import pretrain_encoder
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
wc = snakemake.wildcards
train, val = fold_volumes(snakemake.input.volumes, snakemake.input.splits, wc.fold)
encoder_hparams = model_class(snakemake.params.arch).encoder_hparams(snakemake.params.hparams)
workdir = snakemake.params.workdir  # resumable state, like train's
result = pretrain_encoder(train, val, encoder_hparams=encoder_hparams, device=snakemake.params.device,
                          out_path=snakemake.output.encoder, out_log=snakemake.output.log, workdir=workdir,
                          **snakemake.params.settings)
log.info("encoder pre-training %s (encoder %s)", result, encoder_hparams)
if result["status"] != "done":
    raise SystemExit(f"pre-training stopped at step {result['step']} (signal); rerun to resume from {workdir}")
