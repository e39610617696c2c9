"""Stack the pre-processed subjects of one dataset into volumes.npz (subjects the preprocess rule
excluded, marked in their ``_qc.json``, are left out)."""

from pathlib import Path

from brainuad.data.manifest import read_manifest
from brainuad.data.pack import pack_dataset
from brainuad.utils import exit_now, log_to, read_json

log = log_to(snakemake.log[0])
table = read_manifest(snakemake.input.manifest)
excluded = {rec["subject"] for rec in map(read_json, snakemake.input.qc) if rec.get("excluded")}
for subject in sorted(excluded):
    log.warning("%s was excluded during preprocessing (see its _qc.json); not packed", subject)
kept = table[~table["subject"].isin(excluded)]
info = pack_dataset(kept["subject"].tolist(), Path(snakemake.output[0]).parent / "nifti", snakemake.output[0],
                    ages=kept["age"].tolist())
log.info("packed %s", info)
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
