"""Pre-process one subject (resample, register, brain mask, N4, crop/pad, normalise, downsample, slice crop).

The manifest's flags of the subject (``registered``, ``skull_stripped``, label values, shipped brain mask)
select the steps, see :mod:`brainuad.data.preprocess`. A subject whose input turns out unusable
(:class:`brainuad.errors.InputDataError`) is excluded unless the source is ``strict``: the NIfTI outputs are
then empty placeholder files and ``{subject}_qc.json`` is the exclusion marker
(``{"excluded": true, "source", "subject", "file", "reason", "stage": "preprocess"}``) that the pack and qc
rules collect.
"""

import sys
import tempfile
from pathlib import Path

from brainuad.data.preprocess import preprocess_subject
from brainuad.errors import InputDataError
from brainuad.utils import log_to, write_json

log = log_to(snakemake.log[0])
opts = {k: v for k, v in snakemake.params.options.items() if v is not None or k == "template_mask"}
flags = snakemake.params.subject
subject = snakemake.wildcards.subject
try:
    with tempfile.TemporaryDirectory(prefix="brainuad-ants-", dir=snakemake.resources.get("tmpdir")) as tmp:
        qc = preprocess_subject(snakemake.input.image, snakemake.output.image, snakemake.output.mask,
                                snakemake.output.seg, seg_path=snakemake.input.get("seg"),
                                out_ignore=snakemake.output.ignore, brain_mask_path=snakemake.input.get("brain_mask"),
                                tmpdir=tmp, threads=snakemake.threads, **flags, **opts)
except InputDataError as error:
    message = f"dataset {snakemake.wildcards.dataset}, subject {subject}: {error}"
    if snakemake.params.strict:
        log.error(message)
        print(f"InputDataError: {message}", file=sys.__stderr__, flush=True)
        raise
    log.warning("excluded %s", message)
    for name in ("image", "mask", "seg", "ignore"):  # declared outputs: empty placeholders, never read
        Path(snakemake.output[name]).write_bytes(b"")
    qc = {"excluded": True, "stage": "preprocess", "source": snakemake.params.source, "file": error.path,
          "reason": str(error)}
qc["subject"] = subject
qc["raw_image"] = snakemake.input.image
write_json(qc, snakemake.output.qc)
log.info("qc %s", qc)
