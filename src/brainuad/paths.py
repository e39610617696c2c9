"""Result path patterns shared by the Snakefile, the workflow scripts and the library (torch-free).

Every pattern is a Snakemake wildcard pattern (``{name}`` fields); the rules use them as they are, and
:func:`fill` turns one into a concrete path (or into a narrower pattern when only some fields are given).
"""

from __future__ import annotations

import re
import string

#: the key of one trained model: training set, model, sweep run and fold
RUN_KEY = "{trainset}/{model}/{run}/fold-{fold}"

RAW = "results/raw/{source}/{cohort}"
DATA_DIR = "results/data/{dataset}"
MANIFEST = f"{DATA_DIR}/manifest.tsv"
EXCLUSIONS = f"{DATA_DIR}/exclusions.tsv"
#: one pre-processed volume of a subject; kind: image, mask, seg or ignore
NIFTI = f"{DATA_DIR}/nifti/{{subject}}_{{kind}}.nii.gz"
NIFTI_KINDS = ("image", "mask", "seg", "ignore")
#: subject id of the index-th (1-based) subject of a phantom cohort (brainuad.data.phantom.subject_id)
PHANTOM_SUBJECT = "{cohort}-{index:03d}"
SUBJECT_QC = f"{DATA_DIR}/nifti/{{subject}}_qc.json"
VOLUMES = f"{DATA_DIR}/volumes.npz"
SPLITS = "results/splits/{dataset}.json"

QC_TABLE = "results/qc/{dataset}/qc.tsv"
QC_FIGURE = "results/qc/{dataset}/qc.png"
QC_EXCLUSIONS = "results/qc/{dataset}/exclusions.tsv"

MODEL_DIR = f"results/models/{RUN_KEY}"
MODEL = f"{MODEL_DIR}/model.pt"
TRAIN_LOG = f"{MODEL_DIR}/train_log.tsv"
ENCODER = f"{MODEL_DIR}/encoder.pt"
PRETRAIN_LOG = f"{MODEL_DIR}/pretrain_log.tsv"
TRAIN_WORKDIR = f"work/train/{RUN_KEY}"
PRETRAIN_WORKDIR = f"work/pretrain/{RUN_KEY}"

RECON = f"results/recon/{RUN_KEY}/{{dataset}}.npz"
SCORES = f"results/scores/{RUN_KEY}/{{dataset}}/{{scoring}}.npz"
EVAL_DIR = f"results/eval/{RUN_KEY}/{{dataset}}/{{scoring}}"
THRESHOLD = f"{EVAL_DIR}/threshold.json"
METRICS = f"{EVAL_DIR}/metrics.tsv"
#: healthy-FPR thresholds applied to a pathology set (brainuad.evaluation.protocol.apply_fpr_thresholds)
FPR_METRICS = f"{EVAL_DIR}/fpr.tsv"
#: the evaluation under a table's own protocol (brainuad.evaluation.overrides; "default" = EVAL_DIR)
PROTOCOL_EVAL_DIR = f"{EVAL_DIR}/protocol-{{protocol}}"
PROTOCOL_THRESHOLD = f"{PROTOCOL_EVAL_DIR}/threshold.json"
PROTOCOL_METRICS = f"{PROTOCOL_EVAL_DIR}/metrics.tsv"
PROTOCOL_FPR_METRICS = f"{PROTOCOL_EVAL_DIR}/fpr.tsv"

#: anomaly maps and segmentations as NIfTI for viewers (brainuad.evaluation.viewer_maps; target all_maps)
VIEWER_MAPS = f"results/maps/{RUN_KEY}/{{dataset}}/{{scoring}}"

#: one analysis output; ext: tsv (table) or npz (histograms)
DOMAIN_SHIFT = f"results/analysis/domain_shift/{RUN_KEY}.{{ext}}"

#: ext: tsv, md or tex
TABLE = "results/tables/{table}.{ext}"
TABLE_EXTS = ("tsv", "md", "tex")
#: permutation tests and bootstrap CIs of one table (brainuad.evaluation.stats)
TABLE_STATS = "results/stats/{table}.tsv"
#: the thesis claims re-tested (brainuad.evaluation.claims)
CLAIMS = "results/claims/claims.tsv"
#: published numbers, one TSV per published table (brainuad.evaluation.published); relative to the workflow folder
PUBLISHED = "config/published/{published}.tsv"
SWEEP_TABLE = "results/tables/sweep_{sweep}.tsv"
SWEEP_FIGURE = "results/figures/sweep_{sweep}.png"
#: ext: tsv or md
INFERENCE_TIME = "results/tables/inference_time.{ext}"
DOMAIN_SHIFT_TABLE = "results/tables/domain_shift.tsv"
DOMAIN_SHIFT_FIGURE = "results/figures/domain_shift.png"
QUALITATIVE_FIGURE = "results/figures/qualitative_{table}.png"
TRAINING_CURVES = "results/figures/training_curves.png"
MHD_FIGURE = "results/figures/mhd.png"
#: P8.1 analyses of report.p81 (slice-wise detection table; figures: slicewise, lesion_size, l1 = Figure 4.1 bars)
P81_TABLE = "results/tables/p81_slicewise.tsv"
P81_FIGURE = "results/figures/p81_{kind}.png"
#: lesion-wise detection by lesion size of report.lesion_figure's table
LESION_FIGURE = "results/figures/lesionwise_{table}.png"
#: ext: tsv (long) or md; the lesion-wise table and the healthy-FPR table of a segmentation table's rows
LESION_TABLE = "results/tables/lesionwise_{table}.{ext}"
FPR_TABLE = "results/tables/healthy_fpr_{table}.{ext}"
REPORT = "results/report/benchmark.pdf"
BENCHMARKS = "results/benchmarks"


def fill(pattern: str, **values) -> str:
    """``pattern`` with the given fields replaced by their values; fields not given stay wildcards.

    Examples
    --------
    >>> fill(VOLUMES, dataset="ixi_t2")
    'results/data/ixi_t2/volumes.npz'
    >>> fill(TABLE, ext="tsv")
    'results/tables/{table}.tsv'
    """
    parts = []
    for text, field, _, _ in string.Formatter().parse(pattern):
        parts.append(text)
        if field is not None:
            parts.append(str(values[field]) if field in values else f"{{{field}}}")
    return "".join(parts)


def parse(pattern: str, path: str) -> dict[str, str] | None:
    """The field values of ``path`` if it matches ``pattern`` (fields match no ``/``), else None.

    Examples
    --------
    >>> parse(RECON, "results/recon/h/ae/default/fold-1/t.npz")
    {'trainset': 'h', 'model': 'ae', 'run': 'default', 'fold': '1', 'dataset': 't'}
    >>> parse(RECON, "results/scores/h/ae/default/fold-1/t/l1.npz") is None
    True
    """
    regex = []
    for text, field, _, _ in string.Formatter().parse(pattern):
        regex.append(re.escape(text))
        if field is not None:
            regex.append(f"(?P<{field}>[^/]+)")
    found = re.fullmatch("".join(regex), str(path))
    return found.groupdict() if found else None


def trainset_of(dataset: str, datasets: dict) -> str:
    """The healthy dataset whose models are evaluated on ``dataset`` (itself when it is healthy)."""
    ds = datasets[dataset]
    return dataset if ds["role"] == "healthy" else ds["trainset"]


def eval_dir(trainset: str, model: str, run: str, fold, dataset: str, scoring: str,
             protocol: str = "default") -> str:
    """Folder with ``metrics.tsv`` and ``threshold.json`` of one evaluation (under evaluation protocol
    ``protocol``, :mod:`brainuad.evaluation.overrides`; ``"default"`` = the ``evaluation`` section)."""
    pattern = EVAL_DIR if protocol == "default" else PROTOCOL_EVAL_DIR
    return fill(pattern, trainset=trainset, model=model, run=run, fold=fold, dataset=dataset, scoring=scoring,
                protocol=protocol)


def eval_dir_lookup(datasets: dict):
    """``f(model, run, fold, dataset, scoring, protocol="default") -> eval_dir`` for
    :func:`brainuad.reporting.tables.aggregate`."""
    def lookup(model, run, fold, dataset, scoring, protocol="default"):
        return eval_dir(trainset_of(dataset, datasets), model, run, fold, dataset, scoring, protocol)
    return lookup
