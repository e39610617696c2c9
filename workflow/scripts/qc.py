"""Quality control of one dataset: per-subject QC table with outlier flags, a mid-slice figure and the
table of every subject left out (by the adapter when the manifest was built, or by the preprocess rule)."""

import numpy as np
import pandas as pd

from brainuad.data.sources import EXCLUSION_KEYS
from brainuad.data.pack import load_pack
from brainuad.data.qc import qc_figure, qc_table
from brainuad.utils import log_to, read_json

EXCLUSION_COLUMNS = [*EXCLUSION_KEYS, "stage"]

log = log_to(snakemake.log[0])
dataset = snakemake.wildcards.dataset
records = [read_json(path) for path in snakemake.input.qc]
kept = [rec for rec in records if not rec.get("excluded")]

table = qc_table(kept)
table.insert(0, "dataset", dataset)
table.to_csv(snakemake.output.table, sep="\t", index=False)
flagged = table.loc[table["flagged"].astype(bool), "subject"].tolist() if len(table) else []
log.info("%d subjects, %d flagged: %s", len(table), len(flagged), flagged)

scan = pd.read_csv(snakemake.input.exclusions, sep="\t", dtype=str, keep_default_na=False)
scan["stage"] = "manifest"
late = pd.DataFrame([{k: rec.get(k, "") for k in EXCLUSION_COLUMNS} for rec in records if rec.get("excluded")],
                    columns=EXCLUSION_COLUMNS)
excluded = pd.concat([scan, late], ignore_index=True)[EXCLUSION_COLUMNS]
excluded.insert(0, "dataset", dataset)
excluded.sort_values(["stage", "source", "subject"], kind="stable").to_csv(snakemake.output.exclusions, sep="\t",
                                                                           index=False)
log.info("%d subjects excluded", len(excluded))

# flagged subjects first, so that they are on the first page of the figure
pack = load_pack(snakemake.input.volumes)
subjects = pack["subjects"].tolist()
order = sorted(range(len(subjects)), key=lambda i: (subjects[i] not in flagged, subjects[i]))
written = qc_figure(pack["images"][order].astype(np.float32), [subjects[i] for i in order], snakemake.output.figure,
                    overlays=pack["segs"][order] if pack["segs"].any() else None, highlight=flagged,
                    title=f"QC {snakemake.params.label}: mid-slices (red titles: flagged; red contour: lesion label)")
log.info("figure pages %s", [str(p) for p in written])
