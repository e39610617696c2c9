"""Stack the pre-processed subjects of one dataset into volumes.npz."""

from pathlib import Path

from brainuad.data.manifest import read_manifest
from brainuad.data.pack import pack_dataset
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
table = read_manifest(snakemake.input.manifest)
info = pack_dataset(table["subject"].tolist(), Path(snakemake.output[0]).parent / "nifti", snakemake.output[0],
                    ages=table["age"].tolist())
log.info("packed %s", info)
