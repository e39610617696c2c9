"""Self-supervised masked-image-modelling pre-training of a cDDPM encoder on the fold's healthy training split."""

import inspect

import torch

from brainuad.data.pack import fold_volumes
from brainuad.models import model_class
from brainuad.training.pretrain import pretrain_encoder
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
train, val = fold_volumes(snakemake.input.volumes, snakemake.input.splits, snakemake.wildcards.fold)

# the encoder exactly as the model will build it: its constructor defaults + the configured hparams
defaults = {k: v.default for k, v in inspect.signature(model_class(snakemake.params.arch)).parameters.items()}
hp = {**defaults, **snakemake.params.hparams}
encoder_hparams = {"in_channels": 1, "channels": list(hp["encoder_channels"]), "blocks": list(hp["encoder_blocks"]),
                   "context_dim": int(hp["context_dim"]), "norm": hp["encoder_norm"]}
settings = dict(snakemake.params.settings)
result = pretrain_encoder(train, val, encoder_hparams=encoder_hparams, device=snakemake.params.device,
                          out_path=snakemake.output.encoder, out_log=snakemake.output.log, **settings)
log.info("encoder pre-training %s (encoder %s)", result, encoder_hparams)
