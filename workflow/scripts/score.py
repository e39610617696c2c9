"""Turn stored reconstructions into anomaly maps with one scoring."""

import numpy as np

from brainuad.data.pack import load_pack, subject_index
from brainuad.scoring import score
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
params = dict(snakemake.params.scoring)
name = params.pop("name")
samples = params.pop("samples", None)  # use the first N stored reconstructions (N sweeps)
with np.load(snakemake.input.recon) as z:
    rec = {k: z[k] for k in z.files}
if name == "native":
    if "maps" not in rec:
        raise ValueError(f"scoring 'native' needs a model that produces anomaly maps; "
                         f"{snakemake.input.recon} holds reconstructions (use l1, ssim, ...)")
    maps = rec["maps"].astype(np.float32)
else:
    if "recons" not in rec:
        raise ValueError(f"scoring {name!r} needs reconstructions; {snakemake.input.recon} holds anomaly maps "
                         "of a learning-free model (use scoring 'native')")
    if samples is not None:
        if samples > rec["recons"].shape[0]:
            raise ValueError(f"scoring {name!r} asks for samples={samples} but {snakemake.input.recon} holds "
                             f"{rec['recons'].shape[0]}; raise reconstruct.samples for this model")
        rec["recons"] = rec["recons"][:samples]
    pack = load_pack(snakemake.input.volumes)
    idx = subject_index(pack, rec["subjects"].tolist())
    maps = np.zeros(rec["recons"].shape[1:], dtype=np.float32)
    for i, j in enumerate(idx):  # one volume at a time: (1, 1, D, H, W)
        image = pack["images"][j][None, None].astype(np.float32)
        mask = pack["masks"][j][None, None]
        recons = rec["recons"][:, i][:, None, None].astype(np.float32)
        maps[i] = score(name, image, recons, mask, **params)[0, 0]
np.savez(snakemake.output[0], maps=maps.astype(np.float16), subjects=rec["subjects"], split=rec["split"])
log.info("scoring %s: maps %s", name, maps.shape)
