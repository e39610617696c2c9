"""One sweep: metrics against the swept value + its table.

Scoring sweeps (``scoring_sweeps``): one scoring parameter of one model's stored reconstructions,
one line per dataset (Figure 4.4 analogue). Model sweeps (``sweeps``, rows of a config/sweeps/*.tsv
table): one line per model and dataset, e.g. [DICE] and AUPRC against t_test (Figure 4.2 analogue),
with the configured model (``reference: default``, e.g. the ENS level) as dashed lines.
"""

import pandas as pd

from brainuad.paths import eval_dir_lookup
from brainuad.reporting.figures import sweep_figure
from brainuad.reporting.tables import METRICS, aggregate
from brainuad.utils import log_to

log = log_to(snakemake.log[0])
p = snakemake.params
sw = p.sweep
eval_dir = eval_dir_lookup(p.datasets)
metrics = sw.get("metrics") or [sw.get("metric", "dice_oracle")]


def collect(model, run, scoring):
    spec = {"rows": [{"model": model, "run": run, "scoring": scoring}], "datasets": sw["datasets"], "metrics": metrics}
    return aggregate(spec, eval_dir, p.folds, p.models, p.datasets, default_run=p.run)


parts, refs = [], []
if p.kind == "scoring":
    for value, sid in zip(sw["values"], p.ids):  # scoring id of each value
        parts.append(collect(sw["model"], p.run, sid).assign(value=value))
    if sw.get("reference"):
        refs.append(collect(sw["model"], p.run, sw["reference"]))
    param = f"{sw['scoring']}: {sw['param']}"
    reference_label = sw.get("reference", "")
else:
    scoring = sw.get("scoring", "l1")
    for model in sw["models"]:
        for point in p.points:
            parts.append(collect(model, point["run"], scoring).assign(value=point["value"]))
        if sw.get("reference"):
            refs.append(collect(model, sw["reference"], scoring))
    param = sw.get("x") or next(iter(sw["set"]))
    reference_label = sw.get("reference_label", "configured model")

long = pd.concat(parts, ignore_index=True)
several_models = p.kind == "model" and len(sw["models"]) > 1


def series(df):
    if several_models:
        return df["row"] + " · " + df["dataset_label"]
    return df["dataset_label"]


long["series"] = series(long)
reference = None
if refs:
    reference = pd.concat(refs, ignore_index=True)
    reference["series"] = series(reference)
    table = pd.concat([long, reference.assign(value="reference:" + str(sw["reference"]))], ignore_index=True)
else:
    table = long
table.to_csv(snakemake.output.table, sep="\t", index=False)

scale = {m: METRICS[m][1] for m in metrics}
curve = long.copy()
curve["value"] = curve["value"].astype(float)
curve["mean"] = curve["mean"] * curve["metric"].map(scale)
curve["std"] = curve["std"] * curve["metric"].map(scale)
if reference is not None:
    reference = reference.assign(mean=reference["mean"] * reference["metric"].map(scale))
labels = {m: f"{METRICS[m][0]} (%)" if METRICS[m][1] == 100 else METRICS[m][0] for m in metrics}
sweep_figure(curve, snakemake.output.figure, param=param, metric_labels=labels, reference=reference,
             reference_label=reference_label, title=sw.get("title", ""))
log.info("\n%s", table.to_string())
