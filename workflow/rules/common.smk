# Config loading, validation, wildcard constraints and path helpers shared by all rules.

import functools
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate


sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from brainuad.catalog import LEARNING_FREE  # noqa: E402  (torch-free)

validate(config, "../schemas/config.schema.yaml")

DATASETS = config["datasets"]
MODELS = config["models"]
SCORINGS = config["scorings"]
TABLES = config["tables"]
FOLDS = list(range(config["splits"]["folds"]))
RUN = "default"
LIB = [str(p) for p in sorted(Path(workflow.basedir).glob("src/brainuad/**/*.py"))]


def _config_error(msg):
    raise ValueError(f"config error: {msg}")


def _check_config():
    """Cross-references the schema cannot express."""
    for name, ds in DATASETS.items():
        if ds["source"] not in config["sources"]:
            _config_error(f"datasets.{name}.source '{ds['source']}' is not defined under sources")
        if ds["role"] == "pathology":
            ts = ds.get("trainset")
            if ts not in DATASETS or DATASETS[ts]["role"] != "healthy":
                _config_error(f"datasets.{name}.trainset must name a healthy dataset, got {ts!r}")
            if DATASETS[ts]["sequence"] != ds["sequence"]:
                _config_error(
                    f"datasets.{name} ({ds['sequence']}) is evaluated with models trained on "
                    f"{ts} ({DATASETS[ts]['sequence']}); sequences must match"
                )
    for tname, table in TABLES.items():
        for row in table["rows"]:
            if row["model"] not in MODELS:
                _config_error(f"tables.{tname}: unknown model {row['model']!r}")
            if row.get("scoring", "l1") not in SCORINGS:
                _config_error(f"tables.{tname}: unknown scoring {row.get('scoring')!r}")
        for ds in table["datasets"]:
            if ds not in DATASETS:
                _config_error(f"tables.{tname}: unknown dataset {ds!r}")
            want = "healthy" if table["kind"] == "reconstruction" else "pathology"
            if DATASETS[ds]["role"] != want:
                _config_error(f"tables.{tname} ({table['kind']}) needs {want} datasets, {ds!r} is {DATASETS[ds]['role']}")


_check_config()


def _alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True))


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    trainset=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    scoring=_alternatives(SCORINGS),
    source=_alternatives(config["sources"]),
    fold=r"\d+",
    run=r"[A-Za-z0-9_.=+-]+",
    subject=r"[A-Za-z0-9_.+-]+",
    cohort=r"[A-Za-z0-9_]+",


# ---------------------------------------------------------------- datasets and subjects
def trainset_of(dataset):
    ds = DATASETS[dataset]
    return dataset if ds["role"] == "healthy" else ds["trainset"]


def raw_dir(wildcards):
    ds = DATASETS[wildcards.dataset]
    return f"results/raw/{ds['source']}/{ds['cohort']}"


@functools.lru_cache(maxsize=None)
def _manifest(path, mtime):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def manifest_table(dataset):
    path = checkpoints.manifest.get(dataset=dataset).output[0]
    return _manifest(path, Path(path).stat().st_mtime)


def raw_subject_files(wildcards):
    table = manifest_table(wildcards.dataset)
    row = table[table["subject"] == wildcards.subject]
    if row.empty:
        raise ValueError(f"subject {wildcards.subject} is not in the manifest of {wildcards.dataset}")
    files = {"image": row["image"].iloc[0]}
    if row["seg"].iloc[0]:
        files["seg"] = row["seg"].iloc[0]
    return files


def preprocessed_files(wildcards):
    subjects = manifest_table(wildcards.dataset)["subject"]
    return {
        kind: expand(f"results/data/{wildcards.dataset}/nifti/{{subject}}_{kind}.nii.gz", subject=subjects)
        for kind in ("image", "mask", "seg")
    }


# ---------------------------------------------------------------- models
def model_entry(model):
    return MODELS[model]


def is_trainable(model):
    return model_entry(model)["arch"] not in LEARNING_FREE


def model_hparams(wildcards):
    return model_entry(wildcards.model).get("hparams", {})


def train_settings(wildcards):
    settings = {"seed": config["seed"] + int(wildcards.fold)}
    settings.update(model_entry(wildcards.model).get("train", {}))
    return settings


def reconstruct_settings(wildcards):
    settings = dict(config["reconstruct"])
    settings.update(model_entry(wildcards.model).get("reconstruct", {}))
    return settings


def model_input(wildcards):
    if not is_trainable(wildcards.model):
        return []
    return f"results/models/{wildcards.trainset}/{wildcards.model}/{wildcards.run}/fold-{wildcards.fold}/model.pt"


# ---------------------------------------------------------------- targets
def eval_dir(trainset, model, run, fold, dataset, scoring):
    return f"results/eval/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}"


def table_metric_files(table_name):
    table = TABLES[table_name]
    files = []
    for row in table["rows"]:
        for ds in table["datasets"]:
            for fold in FOLDS:
                d = eval_dir(trainset_of(ds), row["model"], row.get("run", RUN), fold, ds, row.get("scoring", "l1"))
                files += [f"{d}/metrics.tsv", f"{d}/threshold.json"]
    return files


def table_input(wildcards):
    return table_metric_files(wildcards.table)


def all_table_files():
    return expand("results/tables/{table}.{ext}", table=TABLES, ext=["tsv", "md", "tex"])


def all_model_files():
    files = set()
    for table in TABLES.values():
        for row in table["rows"]:
            if is_trainable(row["model"]):
                for ds in table["datasets"]:
                    for fold in FOLDS:
                        files.add(f"results/models/{trainset_of(ds)}/{row['model']}/{row.get('run', RUN)}/fold-{fold}/model.pt")
    return sorted(files)


def train_logs():
    return [f.replace("model.pt", "train_log.tsv") for f in all_model_files()]


def qualitative_inputs():
    spec = config["report"]["qualitative"]
    table = TABLES[spec["table"]]
    files = []
    for row in table["rows"]:
        for ds in table["datasets"]:
            d = f"{trainset_of(ds)}/{row['model']}/{row.get('run', RUN)}/fold-{spec['fold']}"
            files.append(f"results/scores/{d}/{ds}/{row.get('scoring', 'l1')}.npz")
            files.append(f"{eval_dir(trainset_of(ds), row['model'], row.get('run', RUN), spec['fold'], ds, row.get('scoring', 'l1'))}/threshold.json")
            if not is_trainable(row["model"]):
                continue
            files.append(f"results/recon/{d}/{ds}.npz")
    return sorted(set(files))
