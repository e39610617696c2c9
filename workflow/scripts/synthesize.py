"""A synthetic-anomaly evaluation set (DRAEM, PII or FPI) from the healthy test split of another dataset."""

import torch

from brainuad.data.synthetic_set import make_synthetic_pack
from brainuad.training.loop import resolve_device
from brainuad.utils import exit_now, log_to, read_json

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.spec
info = make_synthetic_pack(snakemake.input.volumes, read_json(snakemake.input.splits), snakemake.output[0],
                           kind=spec["kind"], seed=spec["seed"], mode=spec["mode"], options=spec.get("options", {}),
                           device=resolve_device(snakemake.params.device))
if info["empty"]:
    log.warning("subjects without any anomaly voxel (brain too small for the drawn anomaly): %s", info["empty"])
log.info("synthetic set written: %s", info)
exit_now()  # skip the interpreter's teardown of torch (brainuad.utils.exit_now)
