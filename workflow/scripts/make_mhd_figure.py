"""Figure 4.5 analogue: multi-sample scores of one subject and the pixel correlation behind MHD_full."""

import numpy as np

from brainuad.data.pack import load_pack, subject_index
from brainuad.evaluation.postprocess import binarize, postprocess
from brainuad.reporting.figures import mhd_figure, pick_example, pixel_correlation
from brainuad.utils import log_to, read_json

log = log_to(snakemake.log[0])
spec, opts = snakemake.params.spec, snakemake.params.options
with np.load(snakemake.input.recon) as z:
    recons, subjects, split = z["recons"].astype(np.float32), z["subjects"].tolist(), z["split"].tolist()
if recons.shape[0] < 2:
    raise ValueError(f"{snakemake.input.recon}: the MHD figure needs several reconstructions per volume "
                     f"(models.{spec['model']}.reconstruct.samples > 1)")
pack = load_pack(snakemake.input.volumes)
test = [i for i, s in enumerate(split) if s == "test"]
idx = subject_index(pack, [subjects[i] for i in test])
v, sl = pick_example(pack["segs"][idx])
k = test[v]
j = idx[v]
image, mask, seg = pack["images"][j].astype(np.float32), pack["masks"][j], pack["segs"][j]
maps = {}
for key in ("mean", "diag", "full"):
    with np.load(snakemake.input[key]) as z:
        maps[key] = z["maps"][k].astype(np.float32)
final = postprocess(maps["full"], mask, median=opts["median"], erode=opts["erode"], erode_mode=opts.get("erode_mode", "2d"))
binary = binarize(final, read_json(snakemake.input.threshold)["threshold"], min_component=opts["min_component"])
lesion = np.argwhere(seg[sl] > 0)
pixel = tuple(int(c) for c in (lesion.mean(0).round() if len(lesion) else np.argwhere(mask[sl] > 0).mean(0).round()))
panels = {
    "input": image[sl], "mean reconstruction": recons[:, k, sl].mean(0), "S_mean": maps["mean"][sl],
    "S_MHD_diag": maps["diag"][sl], "S_MHD_full": maps["full"][sl], "final map": np.where(binary[sl], final[sl], 0),
    "correlation": pixel_correlation(recons[:, k, sl], mask[sl], pixel),
}
mhd_figure(panels, seg[sl], pixel, snakemake.output[0],
           title=f"{spec['model']} · {spec['dataset']} · {subjects[k]} z={sl} · N={recons.shape[0]} reconstructions")
log.info("subject %s slice %d pixel %s", subjects[k], sl, pixel)
