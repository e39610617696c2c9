"""Turn stored reconstructions into anomaly maps with one scoring."""

import numpy as np

from brainuad.scoring.stored import score_stored
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
out = score_stored(snakemake.params.scoring, snakemake.input.recon, snakemake.input.volumes)
np.savez(snakemake.output[0], **out)
log.info("scoring %s: maps %s", snakemake.params.scoring["name"], out["maps"].shape)
