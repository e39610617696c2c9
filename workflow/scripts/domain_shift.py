"""Domain-shift analysis of one trained model (P8.3 §4.5.2): simulated contrasts x**cl of the healthy test
volumes, reconstructed; intensity histograms of input vs reconstruction on brain voxels and their entropy."""

import numpy as np
import pandas as pd
import torch

from brainuad.analysis.domain_shift import contrast_levels, histogram_shift
from brainuad.data.pack import load_pack, subject_index
from brainuad.inference import run_model, set_attributes
from brainuad.training import load_model, resolve_device
from brainuad.utils import log_to, read_json

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the rule's threads (CPU runs: jobs in parallel, not oversubscribed)
p = snakemake.params
fold = int(snakemake.wildcards.fold)
device = resolve_device(p.device)
pack = load_pack(snakemake.input.volumes)
test = read_json(snakemake.input.splits)["test"][: p.spec.get("max_volumes", 4)]
idx = subject_index(pack, test)
images, masks = pack["images"][idx], pack["masks"][idx] > 0
model = load_model(snakemake.input.model, device)
set_attributes(model, p.settings.get("attributes"), f"model {snakemake.wildcards.model!r}")

rows, hists = [], {}
for cl, x in contrast_levels(images, p.spec.get("levels", [0.3, 0.7, 1.0, 1.5, 2.0])).items():
    rec = run_model(model, x, masks, samples=1, noise_level=p.settings.get("noise_level"),
                    batch_size=p.settings["batch_size"], seed=p.seed + fold, device=device)[0].astype(np.float32)
    res = histogram_shift(x, np.clip(rec, 0, 1), masks, bins=p.spec.get("bins", 500))
    rows.append({"contrast_level": cl, "entropy_input": res["entropy_input"], "entropy_recon": res["entropy_recon"],
                 "entropy_difference": res["entropy_difference"], "kld_p83": res["kld_p83"],
                 "l1_brain": float(np.abs(rec - x)[masks].mean()), "n_voxels": res["n_voxels"]})
    hists[f"input_{cl}"], hists[f"recon_{cl}"] = res["hist_input"], res["hist_recon"]
    hists["bin_edges"] = res["bin_edges"]
table = pd.DataFrame(rows)
table.to_csv(snakemake.output.tsv, sep="\t", index=False)
np.savez(snakemake.output.hist, **hists, subjects=np.asarray(test))
log.info("\n%s", table.to_string())
