"""Splits of one dataset: seeded healthy test + CV folds, or unhealthy val/test; the author's split CSVs
(``author_split`` sources) are taken over as they are. Only the subjects in the pack (not excluded)."""

import numpy as np

from brainuad.data.manifest import read_manifest
from brainuad.data.splits import check_enough_subjects, healthy_splits, pathology_splits, splits_from_manifest
from brainuad.utils import exit_now, log_to, write_json

log = log_to(snakemake.log[0])
table = read_manifest(snakemake.input.manifest)
with np.load(snakemake.input.volumes, allow_pickle=False) as z:
    packed = set(z["subjects"].tolist())
dropped = sorted(set(table["subject"]) - packed)
if dropped:
    log.warning("%d subjects of the manifest are not in the pack and are not split (excluded during preprocessing; "
                "for a synthetic dataset: outside the healthy test split it is built from): %s", len(dropped), dropped)
table = table[table["subject"].isin(packed)].reset_index(drop=True)
opts = snakemake.params.options
if snakemake.params.kind != "author_split":
    check_enough_subjects(len(table), snakemake.wildcards.dataset, snakemake.params.role, folds=opts["folds"],
                          test=opts["healthy_test"], val=snakemake.params.val, val_fraction=opts.get("val_fraction"))
if snakemake.params.kind == "author_split":
    splits = splits_from_manifest(table)
    if snakemake.params.role == "healthy" and len(splits.get("folds", [])) < opts["folds"]:
        raise ValueError(f"the author's split CSVs of dataset {snakemake.wildcards.dataset} have "
                         f"{len(splits.get('folds', []))} folds but splits.folds is {opts['folds']}")
    if snakemake.params.role == "healthy":
        splits["folds"] = splits["folds"][: opts["folds"]]
elif snakemake.params.role == "healthy":
    splits = healthy_splits(table["subject"], table["age"], folds=opts["folds"], test=opts["healthy_test"],
                            val_fraction=opts.get("val_fraction"), age_bins=opts.get("age_bins", 5),
                            seed=snakemake.params.seed)
else:
    splits = pathology_splits(table["subject"], val=snakemake.params.val, seed=snakemake.params.seed,
                              train=snakemake.params.stage2_train)
splits["role"] = snakemake.params.role
write_json(splits, snakemake.output[0])
log.info("splits written: %s", {k: len(v) for k, v in splits.items() if isinstance(v, list)})
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
