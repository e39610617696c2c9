"""Post-process, threshold and measure one (model, fold, dataset, scoring)."""

import numpy as np
import pandas as pd

from brainuad.data.pack import load_pack, subject_index
from brainuad.evaluation.protocol import evaluate_healthy, evaluate_pathology
from brainuad.utils import log_to, write_json

log = log_to(snakemake.log[0])
opts = snakemake.params.options
with np.load(snakemake.input.scores) as z:
    maps, subjects, split = z["maps"], z["subjects"].tolist(), z["split"].tolist()
pack = load_pack(snakemake.input.volumes)
idx = subject_index(pack, subjects)
images = pack["images"][idx].astype(np.float32)
masks, segs = pack["masks"][idx], pack["segs"][idx]
ignores = pack["ignore"][idx] if "ignore" in pack else None  # voxels left out of every metric
with np.load(snakemake.input.recon) as z:
    # the reconstructions the scoring used: the first `samples` (all when unset), averaged
    recons = z["recons"][: snakemake.params.samples].astype(np.float32).mean(0) if "recons" in z.files else None
common = dict(images=images if recons is not None else None, recons=recons, median=opts["median"],
              erode=opts["erode"], erode_mode=opts.get("erode_mode", "2d"), ignores=ignores)
if snakemake.params.role == "healthy":
    lpips = None
    if opts.get("lpips_weights") and recons is not None:  # a local file; nothing is ever downloaded
        from brainuad.evaluation.lpips import LPIPS, lpips_volume
        from brainuad.training import resolve_device

        net = LPIPS(opts["lpips_weights"]).to(resolve_device("auto"))
        lpips = lambda image, recon, mask: lpips_volume(net, image, recon, mask)  # noqa: E731
    summary, rows = evaluate_healthy(maps, masks, split, subjects, fprs=opts.get("healthy_fpr", [0.01]),
                                     lpips=lpips, **common)
else:
    th = opts["threshold"]
    summary, rows = evaluate_pathology(maps, segs, masks, split, subjects, min_component=opts["min_component"],
                                       protocol=th["protocol"], steps=th.get("steps", 10),
                                       cc_in_search=th.get("cc_in_search", False), **common)
write_json(summary, snakemake.output.threshold)
pd.DataFrame(rows).to_csv(snakemake.output.metrics, sep="\t", index=False)
log.info("summary %s", summary)
