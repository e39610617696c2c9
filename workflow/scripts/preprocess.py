"""Pre-process one subject (resample, register, brain mask, N4, crop/pad, normalise, downsample, slice crop)."""

import tempfile

from brainuad.data.preprocess import preprocess_subject
from brainuad.utils import log_to, write_json

log = log_to(snakemake.log[0])
opts = {k: v for k, v in snakemake.params.options.items() if v is not None or k == "template_mask"}
with tempfile.TemporaryDirectory(prefix="brainuad-ants-", dir=snakemake.resources.get("tmpdir")) as tmp:
    qc = preprocess_subject(snakemake.input.image, snakemake.output.image, snakemake.output.mask,
                            snakemake.output.seg, seg_path=snakemake.input.get("seg"), tmpdir=tmp,
                            threads=snakemake.threads, **opts)
qc["subject"] = snakemake.wildcards.subject
qc["raw_image"] = snakemake.input.image
write_json(qc, snakemake.output.qc)
log.info("qc %s", qc)
