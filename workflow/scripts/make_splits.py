"""Seeded splits of one dataset: healthy test + CV folds, or unhealthy val/test."""

from brainuad.data.manifest import read_manifest
from brainuad.data.splits import healthy_splits, pathology_splits
from brainuad.utils import log_to, write_json

log = log_to(snakemake.log[0])
table = read_manifest(snakemake.input.manifest)
opts = snakemake.params.options
if snakemake.params.role == "healthy":
    splits = healthy_splits(table["subject"], table["age"], folds=opts["folds"], test=opts["healthy_test"],
                            val_fraction=opts.get("val_fraction"), age_bins=opts.get("age_bins", 5),
                            seed=snakemake.params.seed)
else:
    splits = pathology_splits(table["subject"], val=snakemake.params.val, seed=snakemake.params.seed)
splits["role"] = snakemake.params.role
write_json(splits, snakemake.output[0])
log.info("splits written: %s", {k: len(v) for k, v in splits.items() if isinstance(v, list)})
