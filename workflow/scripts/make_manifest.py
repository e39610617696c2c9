"""Write the manifest of one dataset (one row per subject)."""

from brainuad.data.manifest import phantom_manifest, write_manifest
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
if snakemake.params.kind != "phantom":
    raise ValueError(f"source kind {snakemake.params.kind!r} has no manifest adapter yet")
table = phantom_manifest(snakemake.input.raw, snakemake.params.sequence)
write_manifest(table, snakemake.output[0])
log.info("%d subjects", len(table))
