"""Domain-shift analysis of one trained model (P8.3 §4.5.2): simulated contrasts x**cl of the healthy test
volumes, reconstructed; intensity histograms of input vs reconstruction on brain voxels and their entropy."""

import numpy as np
import pandas as pd
import torch

from brainuad.analysis.contrast_sweep import contrast_sweep
from brainuad.data.pack import load_pack, subject_index
from brainuad.inference import set_attributes
from brainuad.training import load_model, resolve_device
from brainuad.utils import exit_now, log_to, read_json

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
p = snakemake.params
device = resolve_device(p.device)
pack = load_pack(snakemake.input.volumes)
test = read_json(snakemake.input.splits)["test"][: p.spec.get("max_volumes", 4)]
idx = subject_index(pack, test)
model = set_attributes(load_model(snakemake.input.model, device), p.settings.get("attributes"),
                       f"model {snakemake.wildcards.model!r}")
rows, hists = contrast_sweep(model, pack["images"][idx], pack["masks"][idx] > 0,
                             p.spec.get("levels", [0.3, 0.7, 1.0, 1.5, 2.0]), p.spec.get("bins", 500),
                             noise_level=p.settings.get("noise_level"), batch_size=p.settings["batch_size"],
                             seed=p.seed + int(snakemake.wildcards.fold), device=device)
table = pd.DataFrame(rows)
table.to_csv(snakemake.output.tsv, sep="\t", index=False)
np.savez(snakemake.output.hist, **hists, subjects=np.asarray(test))
log.info("\n%s", table.to_string())
exit_now()  # skip the interpreter's teardown of torch (brainuad.utils.exit_now)
