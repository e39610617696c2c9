"""Write the manifest of one dataset (one row per subject) and its exclusions table.

Phantom cohorts: the generated folder (source kind ``phantom``, no exclusions). Real data: the source of
its kind (:func:`brainuad.data.sources.scan`) reads the distribution in place (read-only;
raw files are referenced by absolute path and checksummed); every subject it cannot use goes to
``exclusions.tsv`` (source, subject, file, reason). With ``strict`` the job fails with one message listing
every bad subject.
"""

import sys

import pandas as pd

from brainuad.data.manifest import MANIFEST_COLUMNS, manifest_frame, write_manifest
from brainuad.data.sources import EXCLUSION_KEYS, scan
from brainuad.errors import InputDataError
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
settings = snakemake.params.scan
exclusions = []
if snakemake.params.kind == "phantom":
    rows, exclusions = scan("phantom", snakemake.input.raw, sequence=snakemake.params.sequence)
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
else:
    options = dict(settings["options"])
    log.info("scanning %s data below %s (sequence %s, options %s, strict %s)", settings["kind"], settings["root"],
             snakemake.params.sequence, options, settings["strict"])
    try:
        rows, exclusions = scan(settings["kind"], settings["root"], sequence=snakemake.params.sequence,
                                strict=settings["strict"], **options)
        if not rows:
            reasons = "; ".join(bad["reason"] for bad in exclusions[:5]) + (" ..." if len(exclusions) > 5 else "")
            raise InputDataError(settings["root"], f"no usable subject for dataset {snakemake.wildcards.dataset} "
                                                   f"({len(exclusions)} excluded: {reasons})")
    except InputDataError as error:
        message = f"dataset {snakemake.wildcards.dataset}: {error}"
        log.error(message)
        print(f"InputDataError: {message}", file=sys.__stderr__, flush=True)  # shown by Snakemake, not only in the log
        raise
    for bad in exclusions:
        log.warning("excluded %s: %s", bad["subject"], bad["reason"])
    table = manifest_frame(rows)

write_manifest(table, snakemake.output.manifest)
excluded = pd.DataFrame(exclusions, columns=list(EXCLUSION_KEYS)).sort_values(["source", "subject"], kind="stable")
excluded.to_csv(snakemake.output.exclusions, sep="\t", index=False)
log.info("%d subjects, %d excluded", len(table), len(exclusions))
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)
