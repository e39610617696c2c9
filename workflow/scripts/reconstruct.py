"""Reconstruct (or map) the evaluation volumes of one dataset with one trained model."""

import platform
import time

import numpy as np
import torch

from brainuad.data.pack import load_pack, subject_index
from brainuad.inference import run_model, set_attributes
from brainuad.models import build
from brainuad.training import load_model, resolve_device
from brainuad.utils import log_to, read_json

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
fold = int(snakemake.wildcards.fold)
device = resolve_device(snakemake.params.device)
pack = load_pack(snakemake.input.volumes)
splits = read_json(snakemake.input.splits)
if snakemake.params.role == "healthy":  # the fold's healthy validation set (for healthy-FPR thresholds) + test
    val, test = splits["folds"][fold]["val"], splits["test"]
else:
    val, test = splits["val"], splits["test"]
subjects = list(val) + list(test)
idx = subject_index(pack, subjects)
if snakemake.input.model:
    model = load_model(snakemake.input.model, device)
else:
    model = build(snakemake.params.arch, **snakemake.params.hparams).to(device).eval()
settings = snakemake.params.settings
set_attributes(model, settings.get("attributes"), f"model {snakemake.params.arch!r}")
if device.type == "cuda":
    torch.cuda.synchronize(device)
t0 = time.perf_counter()
out = run_model(model, pack["images"][idx], pack["masks"][idx], samples=settings["samples"],
                noise_level=settings.get("noise_level"), batch_size=settings["batch_size"],
                seed=snakemake.params.seed + fold, device=device)
if device.type == "cuda":
    torch.cuda.synchronize(device)
seconds = (time.perf_counter() - t0) / max(len(subjects), 1)
hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s))"
key = "maps" if getattr(model, "produces", "recon") == "map" else "recons"
np.savez(snakemake.output[0], **{key: out}, subjects=np.asarray(subjects),
         split=np.asarray(["val"] * len(val) + ["test"] * len(test)),
         seconds_per_volume=np.float64(seconds), samples=np.int64(settings["samples"]), hardware=np.asarray(hardware))
log.info("%s %s for %d subjects on %s: %.3f s per volume", key, out.shape, len(subjects), hardware, seconds)
