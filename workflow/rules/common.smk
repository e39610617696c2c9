# Config validation, the planned study (brainuad.study), wildcard constraints and the input functions of
# the rules. The planning logic lives in src/brainuad/study.py; the functions here only unpack wildcards
# and look up the manifests behind the `manifest` checkpoints.

import functools
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from brainuad import paths  # noqa: E402  (torch-free)
from brainuad import study  # noqa: E402
from brainuad.errors import InputDataError  # noqa: E402
from brainuad.study import RUN, Study, canon  # noqa: E402

try:
    try:
        validate(config, "../schemas/config.schema.yaml")  # also fills in the schema's defaults
    except WorkflowError as err:  # one line naming the key instead of the schema section
        raise study.schema_error(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") or err
    STUDY = Study(config, workflow.basedir)
except ValueError as err:
    if not (str(err).startswith("config error:") or isinstance(err, InputDataError)):
        raise
    # the message alone: raised here, Snakemake would print the Python stack of the Snakefile with it
    print(err, file=sys.stderr)
    sys.exit(1)

DATASETS = STUDY.datasets
MODELS = STUDY.models
SCORINGS = STUDY.scorings
TABLES = STUDY.tables
FOLDS = STUDY.folds


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    trainset=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    scoring=_alternatives(SCORINGS),
    table=_alternatives(TABLES),
    source=_alternatives(config["sources"]),
    fold=r"\d+",
    run=_alternatives(STUDY.run_ids),
    subject=r"[A-Za-z0-9_.+-]+",
    protocol=_alternatives(STUDY.protocol_ids) if STUDY.protocol_ids else "(?!)",
    cohort=r"[A-Za-z0-9_]+",


# ---------------------------------------------------------------- datasets and subjects
def raw_dir(wildcards):
    """Phantom: the generated cohort folder; real data: no input file (read in place by the manifest job)."""
    return STUDY.raw_dir(wildcards.dataset) or []


@functools.lru_cache(maxsize=None)
def _manifest(path, mtime):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def manifest_table(dataset):
    path = checkpoints.manifest.get(dataset=dataset).output[0]
    return _manifest(path, Path(path).stat().st_mtime)


@functools.lru_cache(maxsize=None)
def _manifest_rows(path, mtime):
    """{subject: row dict} of a manifest (one dict lookup per job instead of a table scan: thousands of
    subjects are planned per run)."""
    return {row["subject"]: row for row in _manifest(path, mtime).to_dict("records")}


def manifest_row(dataset, subject):
    path = checkpoints.manifest.get(dataset=dataset).output[0]
    rows = _manifest_rows(path, Path(path).stat().st_mtime)
    if subject not in rows:
        raise ValueError(f"subject {subject} is not in the manifest of {dataset}")
    return rows[subject]


def raw_subject_files(wildcards):
    return study.subject_files(manifest_row(wildcards.dataset, wildcards.subject))


def subject_flags(wildcards):
    return study.subject_flags(manifest_row(wildcards.dataset, wildcards.subject))


def preprocessed_files(wildcards):
    return study.preprocessed_files(wildcards.dataset, manifest_table(wildcards.dataset)["subject"])


def qc_inputs(wildcards):
    """QC inputs of a dataset -- every subject's QC record, the pack and the manifest's exclusions."""
    return {
        "qc": preprocessed_files(wildcards)["qc"],
        "volumes": paths.fill(paths.VOLUMES, dataset=wildcards.dataset),
        "exclusions": paths.fill(paths.EXCLUSIONS, dataset=wildcards.dataset),
    }


# ---------------------------------------------------------------- models
def model_hparams(wildcards):
    return STUDY.model_hparams(wildcards.model, wildcards.run)


def train_settings(wildcards):
    return STUDY.train_settings(wildcards.model, wildcards.run, wildcards.fold)


def pretrain_settings(wildcards):
    return STUDY.pretrain_settings(wildcards.model, wildcards.run, wildcards.fold)


def reconstruct_settings(wildcards):
    return STUDY.reconstruct_settings(wildcards.model, wildcards.run)


def model_input(wildcards):
    """The trained weights a job reads ([] for a learning-free model)."""
    return STUDY.model_file(wildcards.trainset, wildcards.model, wildcards.run, wildcards.fold) or []


#: SADM Stage II models (trained by train_stage2) and every other model (trained by train); a regex that
#: matches nothing where a list is empty
STAGE2_MODELS = STUDY.stage2_models()
NO_MATCH = r"(?!x)x"


def model_alternatives(stage2):
    names = [m for m in MODELS if (m in STAGE2_MODELS) == stage2]
    return _alternatives(names) if names else NO_MATCH


def stage2_inputs(wildcards):
    """Stage I model.pt, volumes and splits of a Stage II training job."""
    return STUDY.stage2_inputs(wildcards.trainset, wildcards.model, wildcards.run, wildcards.fold)


def pretrain_input(wildcards):
    """``{"encoder": path}`` of the SSL-pretrained encoder a model's training consumes, else ``{}``."""
    encoder = STUDY.encoder_file(wildcards.trainset, wildcards.model, wildcards.run, wildcards.fold)
    return {"encoder": encoder} if encoder else {}


# ---------------------------------------------------------------- evaluation
def eval_protocol(wildcards):
    """The evaluation protocol id of an evaluate job ("default" for the plain evaluate rules)."""
    return getattr(wildcards, "protocol", "default")


def healthy_threshold(wildcards):
    """threshold.json of the healthy evaluation whose FPR thresholds evaluate_fpr applies."""
    return STUDY.healthy_threshold(wildcards.trainset, wildcards.model, wildcards.run, wildcards.fold,
                                   wildcards.scoring, eval_protocol(wildcards))


# ---------------------------------------------------------------- tables, figures, sweeps
def table_input(wildcards):
    return STUDY.table_metric_files(wildcards.table)


def qualitative_inputs(wildcards):
    return STUDY.qualitative_inputs(wildcards.table)


def fpr_inputs(wildcards):
    return STUDY.fpr_files(wildcards.table)


def sweep_inputs(wildcards):
    return STUDY.sweep_inputs(wildcards.sweep)


def sweep_ids(wildcards):
    return STUDY.sweep_ids(wildcards.sweep)


def sweep_points(wildcards):
    return STUDY.sweep_points(wildcards.sweep)


# ---------------------------------------------------------------- viewer maps
def viewer_map_inputs(wildcards):
    """Scores, pack, threshold and every subject's QC record (the stored registration) of one evaluation."""
    key = {k: wildcards[k] for k in ("trainset", "model", "run", "fold", "dataset", "scoring")}
    return {
        "scores": paths.fill(paths.SCORES, **key),
        "threshold": paths.fill(paths.THRESHOLD, **key),
        "volumes": paths.fill(paths.VOLUMES, dataset=wildcards.dataset),
        "manifest": paths.fill(paths.MANIFEST, dataset=wildcards.dataset),
        "qc": preprocessed_files(wildcards)["qc"],
    }


def viewer_map_raw_images(wildcards):
    """{subject: raw scan} of a dataset, from its manifest."""
    return {row["subject"]: row["image"] for row in manifest_table(wildcards.dataset).to_dict("records")}
