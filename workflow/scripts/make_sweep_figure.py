"""One scoring sweep: metric against the swept parameter per dataset (Figure 4.4 analogue) + its table."""

import pandas as pd

from brainuad.reporting.figures import sweep_figure
from brainuad.reporting.tables import METRICS, aggregate
from brainuad.paths import eval_dir_lookup
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
p = snakemake.params
sw = p.sweep
datasets = p.datasets


eval_dir = eval_dir_lookup(datasets)

metric = sw.get("metric", "dice_oracle")
parts = []
for value, sid in zip(sw["values"], p.ids):  # scoring id of each value
    spec = {"rows": [{"model": sw["model"], "scoring": sid}], "datasets": sw["datasets"], "metrics": [metric]}
    part = aggregate(spec, eval_dir, p.folds, p.models, datasets, default_run=p.run)
    part["value"] = value
    parts.append(part)
long = pd.concat(parts, ignore_index=True)
reference = None
if sw.get("reference"):
    spec = {"rows": [{"model": sw["model"], "scoring": sw["reference"]}], "datasets": sw["datasets"], "metrics": [metric]}
    reference = aggregate(spec, eval_dir, p.folds, p.models, datasets, default_run=p.run)
    ref = reference.assign(value="reference:" + sw["reference"])
    long = pd.concat([long, ref], ignore_index=True)
long.to_csv(snakemake.output.table, sep="\t", index=False)
label, scale, _ = METRICS[metric]
curve = long[~long["value"].astype(str).str.startswith("reference")].copy()
curve["value"] = curve["value"].astype(float)
curve[["mean", "std"]] = curve[["mean", "std"]] * scale
if reference is not None:
    reference = reference.assign(mean=reference["mean"] * scale)
model_label = p.models[sw["model"]].get("label", sw["model"])
sweep_figure(curve, snakemake.output.figure, param=f"{sw['scoring']}: {sw['param']}", metric_label=f"{label} (%)",
             reference=reference, reference_label=sw.get("reference", ""),
             title=sw.get("title", f"{model_label}: {label} against {sw['param']}"))
log.info("\n%s", long.to_string())
