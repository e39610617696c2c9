"""Qualitative figure of one table (Figure 4.3 analogue): one row per pathology dataset x model."""

from pathlib import Path

import numpy as np

from brainuad.analysis.domain_shift import histogram_shift
from brainuad.data.pack import load_pack, subject_index
from brainuad.evaluation.postprocess import binarize, postprocess
from brainuad.paths import trainset_of
from brainuad.reporting.figures import pick_example, qualitative_figure
from brainuad.utils import log_to, read_json

log = log_to(snakemake.log[0])
p = snakemake.params
fold, opts = p.spec["fold"], p.options
panels = []
for ds in p.table["datasets"]:
    dcfg = p.datasets[ds]
    trainset = trainset_of(ds, p.datasets)
    pack = load_pack(f"results/data/{ds}/volumes.npz")
    example = None
    for row in p.table["rows"]:
        model, scoring, run = row["model"], row.get("scoring", "l1"), row.get("run", p.run)
        base = f"{trainset}/{model}/{run}/fold-{fold}"
        with np.load(f"results/scores/{base}/{ds}/{scoring}.npz") as z:
            maps, subjects, split = z["maps"], z["subjects"].tolist(), z["split"]
        test = [i for i, s in enumerate(split) if s == "test"]
        idx = subject_index(pack, [subjects[i] for i in test])
        if example is None:  # same subject and slice for every model of this dataset
            v, sl = pick_example(pack["segs"][idx])
            example = (subjects[test[v]], sl)
        subject, sl = example
        k, j = subjects.index(subject), subject_index(pack, [subject])[0]
        image, mask, seg = pack["images"][j].astype(np.float32), pack["masks"][j], pack["segs"][j]
        amap = postprocess(maps[k].astype(np.float32), mask, median=opts["median"], erode=opts["erode"],
                           erode_mode=opts.get("erode_mode", "2d"))
        thr = read_json(f"results/eval/{base}/{ds}/{scoring}/threshold.json")["threshold"]
        binary = binarize(amap, thr, min_component=opts["min_component"])
        recon, hist = None, None
        rec_file = Path(f"results/recon/{base}/{ds}.npz")
        if rec_file.exists():
            with np.load(rec_file) as z:
                if "recons" in z.files:
                    volume = z["recons"][:, k].astype(np.float32).mean(0)  # mean over stored samples
                    recon = volume[sl]
                    healthy = (mask > 0) & (seg == 0)
                    if healthy.any():  # input vs reconstruction on the healthy brain voxels of the volume
                        hist = histogram_shift(image, volume, healthy, bins=p.histogram_bins)
        label = p.models[model].get("label", model)
        panels.append({"title": f"{dcfg.get('label', ds)}\n{label} · {subject} z={sl}", "image": image[sl],
                       "seg": seg[sl], "mask": mask[sl], "map": amap[sl], "recon": recon, "binary": binary[sl],
                       "hist": hist})
qualitative_figure(panels, snakemake.output[0])
log.info("%d qualitative panels for table %s", len(panels), snakemake.wildcards.table)
