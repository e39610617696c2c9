"""Reconstruct (or map) the evaluation volumes of one dataset with one trained model."""

import torch

from brainuad.data.pack import load_pack, subject_index
from brainuad.inference import evaluation_subjects, inference_model, save_outputs, set_attributes, timed_run_model
from brainuad.training import resolve_device
from brainuad.utils import log_to, read_json

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
fold, settings = int(snakemake.wildcards.fold), snakemake.params.settings
device = resolve_device(snakemake.params.device)
pack = load_pack(snakemake.input.volumes)
val, test = evaluation_subjects(read_json(snakemake.input.splits), snakemake.params.role, fold)
idx = subject_index(pack, val + test)
model = inference_model(snakemake.input.model, snakemake.params.arch, snakemake.params.hparams, device,
                        channels_last=settings.get("channels_last", False), compile=settings.get("compile", False))
set_attributes(model, settings.get("attributes"), f"model {snakemake.params.arch!r}")
run = timed_run_model(model, pack["images"][idx], pack["masks"][idx], samples=settings["samples"],
                      noise_level=settings.get("noise_level"), batch_size=settings["batch_size"],
                      seed=snakemake.params.seed + fold, device=device, amp=settings.get("amp", False),
                      memory_mb=settings.get("memory_mb", 0))
save_outputs(snakemake.output[0], run, val, test, settings["samples"])
log.info("%s %s for %d subjects on %s: %.3f s per volume", run.key, run.output.shape, len(val) + len(test),
         run.hardware, run.seconds_per_volume)
